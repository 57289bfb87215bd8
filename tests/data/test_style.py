"""Style statistics: exact values on hand-made phrases."""

from __future__ import annotations

import numpy as np
import pytest

from midivae.constants import BASS, DRUMS, PHRASE_SHAPE, PIANO
from midivae.data.style import NOTE_STYLE_DIMS, STYLE_DIMS, TEMPO_DIMS, phrase_style, tempo_code


def _phrase() -> np.ndarray:
    ph = np.zeros((1, *PHRASE_SHAPE), dtype=bool)
    ph[0, :, 0:6, 36, PIANO] = True  # a C (pitch index 36 = MIDI 60) on every bar's first beat
    ph[0, :, 12:18, 40, PIANO] = True  # an E on the second beat
    ph[0, :, 0:2, 2, DRUMS] = True  # a drum hit on every bar's first step
    ph[0, :, 24:48, 7, BASS] = True  # a G held over the second half of each bar
    return ph


def test_values_of_a_hand_made_phrase():
    s = phrase_style(_phrase())[0]
    assert s.shape == (STYLE_DIMS,) == (171 + 8,)
    assert np.isnan(s[171:]).all()  # no tempo given: unknown
    chroma = s[:60].reshape(12, 5)
    assert chroma[0, PIANO] == chroma[4, PIANO] == 0.5 and chroma[7, BASS] == 1.0
    assert chroma[:, 4].sum() == 0  # no strings
    density = s[60:65]
    assert density[PIANO] == pytest.approx(np.log1p(4 * 12)) and density[BASS] == pytest.approx(np.log1p(4 * 24))
    drums, pitched = s[65:113], s[113:161]
    assert drums[0] == 1.0 and drums[1:].sum() == 0  # a held cell is not a new onset
    assert pitched[0] == pitched[12] == pitched[24] == pytest.approx(1 / 3)
    mean, spread = s[161:166], s[166:171]
    assert mean[PIANO] * 84 == pytest.approx(38.0) and spread[PIANO] * 24 == pytest.approx(2.0)
    assert mean[BASS] * 84 == pytest.approx(7.0) and spread[BASS] == 0


def test_tempo_code_folds_octaves_and_marks_the_unknown():
    code = tempo_code(np.array([60.0, 120.0, 240.0, 90.0, np.nan, 0.0]), 6)
    assert code.shape == (6, TEMPO_DIMS)
    np.testing.assert_allclose(code[1], code[0], atol=1e-6)  # double and half time: one code
    np.testing.assert_allclose(code[2], code[0], atol=1e-6)
    assert np.abs(code[3] - code[0]).max() > 0.5  # a fifth of an octave away: another code
    assert np.isnan(code[4:]).all()  # unknown (NaN, not positive)
    # k-th harmonic: cos/sin of 2 pi k log2(bpm); 120 BPM = 2^6.907
    x = np.log2(120.0)
    np.testing.assert_allclose(code[1, [0, 4]], [np.cos(2 * np.pi * x), np.sin(2 * np.pi * x)], atol=1e-6)
    s = phrase_style(_phrase(), 120.0)[0]
    np.testing.assert_allclose(s[NOTE_STYLE_DIMS:], code[1], atol=1e-6)
    np.testing.assert_allclose(phrase_style(np.repeat(_phrase(), 2, 0), np.array([120.0, np.nan]))[:, NOTE_STYLE_DIMS:],
                               np.stack([code[1], code[4]]), atol=1e-6)


def test_an_empty_phrase_is_all_zero_and_bars_are_interchangeable():
    assert not phrase_style(np.zeros((2, *PHRASE_SHAPE), dtype=bool), 100.0)[:, :NOTE_STYLE_DIMS].any()
    ph = _phrase()
    ph[0, 0, 30:33, 50, PIANO] = True
    rolled = np.roll(ph, 1, axis=1)  # the same bars in another order
    np.testing.assert_allclose(phrase_style(rolled), phrase_style(ph))
    with pytest.raises(ValueError):
        phrase_style(ph[0])
