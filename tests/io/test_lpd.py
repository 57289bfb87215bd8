from __future__ import annotations

from pathlib import Path

import numpy as np
import pypianoroll
import pytest

from midivae.constants import N_TRACKS
from midivae.errors import InvalidInputError
from midivae.io import read_lpd
from midivae.song import cut_phrases


def _some_songs(data_dir: Path, n: int) -> list[Path]:
    return sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:n]


def _dilate(roll: np.ndarray) -> np.ndarray:
    out = roll.copy()
    out[1:] |= roll[:-1]
    out[:-1] |= roll[1:]
    return out


def test_lpd_reader_matches_pypianoroll_within_a_step(data_dir: Path) -> None:
    """Every cell we set is within one step of a cell pypianoroll sets, and vice versa.

    The 24 -> 12 steps-per-beat downsampling rounds onsets and ends to the nearest step (halves
    up) and leaves a one-step gap before re-attacks, so exact cell equality with a max-pooled
    pypianoroll is not expected; the notes must still be the same notes.
    """
    for path in _some_songs(data_dir, 8):
        ours = read_lpd(path).roll
        multitrack = pypianoroll.load(path)
        n = ours.shape[0]
        for t, track in enumerate(multitrack.tracks):
            if track.pianoroll.shape[0] == 0:
                assert not ours[:, :, t].any()
                continue
            ref = track.pianoroll[: 2 * n].reshape(n, 2, 128).max(axis=1)[:, 24:108] > 0
            mine = ours[:, :, t]
            if not ref.any():
                continue
            assert (mine & _dilate(ref)).sum() / mine.sum() > 0.999, (path.name, t)
            assert (ref & _dilate(mine)).sum() / ref.sum() > 0.98, (path.name, t)


def test_phrases_have_the_musegan_layout(data_dir: Path) -> None:
    phrases = cut_phrases(read_lpd(_some_songs(data_dir, 1)[0]))
    assert phrases.phrases.shape[1:] == (4, 48, 84, 5)
    assert phrases.phrases.dtype == bool
    assert phrases.phrases.reshape(len(phrases), -1).any(axis=1).all()
    assert (np.diff(phrases.bar_offsets) >= 4).all() and (phrases.bar_offsets % 4 == 0).all()


def test_an_lpd_songs_tempo_is_the_median_of_its_steps(data_dir: Path) -> None:
    for path in _some_songs(data_dir, 40):
        steps = np.load(path)["tempo"]
        assert read_lpd(path).tempo == np.sort(steps)[(len(steps) + 1) // 2 - 1]  # every step weighs the same


def test_not_an_lpd_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(InvalidInputError, match="not an LPD-5"):
        read_lpd(tmp_path / "x.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match="bad.npz"):
        read_lpd(tmp_path / "bad.npz")


@pytest.mark.parametrize("damage, cause", [
    (lambda a: a.update(pianoroll_1_csc_data=a["pianoroll_1_csc_data"][:-5]), "values and"),
    (lambda a: a.update(pianoroll_2_csc_indptr=a["pianoroll_2_csc_indptr"][::-1].copy()), "column pointers"),
    (lambda a: a.update(pianoroll_3_csc_shape=np.array([a["pianoroll_3_csc_shape"][0], 84])), "not \\(steps, 128\\)"),
    (lambda a: a.update(pianoroll_4_csc_shape=np.array([3, 128])), "row indices outside"),
    (lambda a: a.update(pianoroll_0_csc_indices=a["pianoroll_0_csc_indices"].astype(str)), "not numbers"),
])
def test_damaged_pianoroll_arrays_are_bad_input(data_dir: Path, tmp_path: Path, damage, cause: str) -> None:
    """Arrays that do not form a pianoroll fail as InvalidInputError (a collection's reader skips
    the file), not as an IndexError inside the note reader."""
    for path in _some_songs(data_dir, 50):
        with np.load(path) as npz:
            arrays = dict(npz)
        if all(arrays[f"pianoroll_{i}_csc_data"].size for i in range(N_TRACKS)):
            break  # a song with notes on every track: each damage below reaches some
    else:
        pytest.fail("no song with five non-empty tracks among the first 50")
    damage(arrays)
    np.savez(tmp_path / "damaged.npz", **arrays)
    with pytest.raises(InvalidInputError, match=cause):
        read_lpd(tmp_path / "damaged.npz")
