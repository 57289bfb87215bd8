"""Augmentations: exact effects on hand-built phrases, purity, seeding, and real-data sanity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from midivae.constants import (
    BARS_PER_PHRASE,
    DRUMS,
    GUITAR,
    N_PITCHES,
    PHRASE_SHAPE,
    PIANO,
    STEPS_PER_BAR,
    STEPS_PER_PHRASE,
)
from midivae.data import augment as A


def _phrase_with_notes(notes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """One phrase from ``(track, pitch, start_step, end_step)`` notes on the 192-step timeline."""
    roll = np.zeros((STEPS_PER_PHRASE, N_PITCHES, len(PHRASE_SHAPE) + 1), dtype=bool)
    for track, pitch, start, end in notes:
        roll[start:end, pitch, track] = True
    return torch.from_numpy(roll.reshape(1, *PHRASE_SHAPE))


def _cells(x: torch.Tensor) -> set[tuple[int, ...]]:
    t = x.reshape(x.shape[0], STEPS_PER_PHRASE, N_PITCHES, -1)
    return {tuple(map(int, c)) for c in torch.nonzero(t)}


@pytest.fixture
def x() -> torch.Tensor:
    # piano C4 for a beat, drum hit, guitar note crossing the first bar line
    return _phrase_with_notes([(PIANO, 36, 0, 12), (DRUMS, 12, 0, 2), (GUITAR, 40, 40, 60)])


def test_transpose_moves_pitched_tracks_only(x: torch.Tensor) -> None:
    y = A.transpose(x, 2)
    cells = _cells(y)
    assert (0, 0, 38, PIANO) in cells and (0, 0, 36, PIANO) not in cells
    assert (0, 0, 12, DRUMS) in cells  # drums keep their pitch
    assert (0, 45, 42, GUITAR) in cells
    assert torch.equal(A.transpose(y, -2), x)


def test_transpose_drops_notes_pushed_out_of_range() -> None:
    x = _phrase_with_notes([(PIANO, N_PITCHES - 1, 0, 4), (PIANO, 10, 0, 4)])
    y = A.transpose(x, 1)
    assert _cells(y) == {(0, t, 11, PIANO) for t in range(4)}


def test_time_shift_and_bar_roll(x: torch.Tensor) -> None:
    y = A.time_shift(x, 6)
    assert (0, 6, 36, PIANO) in _cells(y) and (0, 0, 36, PIANO) not in _cells(y)
    assert int(y.sum()) == int(x.sum())  # nothing falls off the end here
    r = A.bar_roll(x, 1)
    assert (0, STEPS_PER_BAR, 36, PIANO) in _cells(r)
    assert torch.equal(A.bar_roll(r, BARS_PER_PHRASE - 1), x)


def test_drop_notes_removes_whole_notes(x: torch.Tensor) -> None:
    rng = np.random.default_rng(0)
    batch = x.repeat(200, 1, 1, 1, 1)
    y = A.drop_notes(batch, 0.5, rng)
    counts = A.note_count(y)
    assert set(np.unique(counts)) <= {0, 1, 2, 3}
    assert 0.35 < counts.mean() / 3 < 0.65
    # every surviving note is whole: its (pitch, track) column keeps all of its steps (12, 2, 20)
    t = y.reshape(200, STEPS_PER_PHRASE, N_PITCHES, -1).sum(dim=1)
    assert set(t[t > 0].tolist()) <= {12, 2, 20}


def test_drop_notes_rate_on_real_notes() -> None:
    rng = np.random.default_rng(1)
    notes = [(PIANO, p, 4 * p, 4 * p + 3) for p in range(40)]
    x = _phrase_with_notes(notes)
    kept = A.note_count(A.drop_notes(x.repeat(50, 1, 1, 1, 1), 0.2, rng)).sum() / (50 * 40)
    assert 0.75 < kept < 0.85


def test_move_and_drop_track(x: torch.Tensor) -> None:
    y = A.move_track(x, PIANO, GUITAR)
    assert int(y[..., PIANO].sum()) == 0
    assert int(y[..., GUITAR].sum()) == int(x[..., PIANO].sum() + x[..., GUITAR].sum())
    assert torch.equal(A.move_track(x, PIANO, PIANO), x)
    z = A.drop_track(x, DRUMS)
    assert int(z[..., DRUMS].sum()) == 0 and int(z.sum()) == int(x.sum() - x[..., DRUMS].sum())
    assert torch.equal(A.drop_track(x, -1), x)


def test_drum_change_leaves_drums_out_or_thins_them_and_swaps_cymbals() -> None:
    from midivae.constants import CYMBALS, LOWEST_PITCH

    hat, kick = 42 - LOWEST_PITCH, 36 - LOWEST_PITCH
    notes = [(DRUMS, hat, t, t + 1) for t in range(0, 192, 6)] + [(DRUMS, kick, t, t + 1) for t in range(0, 192, 24)]
    x = _phrase_with_notes(notes + [(PIANO, 40, 0, 96)]).repeat(24, 1, 1, 1, 1)
    c = A.to_cells(x)
    out = A._change_drums(c, np.ones(24, bool), np.random.default_rng(0))
    y = A.to_dense(out, x.dtype)
    assert torch.equal(y[..., PIANO], x[..., PIANO])  # pitched tracks untouched
    drum_notes = y[..., DRUMS].reshape(24, -1).sum(dim=1)
    left_out, thinned = drum_notes == 0, drum_notes > 0
    assert left_out.any() and thinned.any()
    assert ((drum_notes[thinned] > 0.2 * len(notes)) & (drum_notes[thinned] < 0.8 * len(notes))).all()
    cymbals = set(np.asarray(CYMBALS) - LOWEST_PITCH)
    hats = y[..., DRUMS].reshape(24, -1, N_PITCHES).sum(dim=1)  # (sample, pitch) hit counts
    for s in np.flatnonzero(thinned.numpy()):
        used = set(np.flatnonzero(hats[s].numpy()))
        assert used - {kick} <= cymbals and len(used - {kick}) == 1  # the hi-hat became one cymbal
    assert {int(np.flatnonzero(hats[s].numpy() * (np.arange(N_PITCHES) != kick))[0])
            for s in np.flatnonzero(thinned.numpy())} != {hat}  # swapped somewhere
    same = A._change_drums(c, np.zeros(24, bool), np.random.default_rng(0))
    assert same is c


def test_octave_shift_moves_one_track(x: torch.Tensor) -> None:
    y = A.octave_shift(x, PIANO, 1)
    assert (0, 0, 48, PIANO) in _cells(y)
    assert torch.equal(y[..., GUITAR], x[..., GUITAR])


def test_functions_are_pure_and_keep_dtype(x: torch.Tensor) -> None:
    before = x.clone()
    xf = x.float()
    for y in (A.transpose(xf, 3), A.time_shift(xf, -2), A.random_view(xf, np.random.default_rng(0))):
        assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(x, before)
    assert A.transpose(x.numpy()[0], 1).shape == x.shape  # numpy, single phrase


def test_random_view_is_seeded_and_varied() -> None:
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((32, *PHRASE_SHAPE)) < 0.01)
    a = A.random_view(x, np.random.default_rng(5))
    b = A.random_view(x, np.random.default_rng(5))
    c = A.random_view(x, np.random.default_rng(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    changed = (a != x).reshape(32, -1).any(dim=1).float().mean()
    assert changed > 0.5


def test_random_view_on_real_phrases(data_dir) -> None:
    from midivae.io import read_lpd
    from midivae.song import cut_phrases

    path = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[0]
    x = torch.from_numpy(cut_phrases(read_lpd(path)).phrases)
    cfg = A.AugmentConfig(p_transpose=0, p_octave=0, p_move_track=0, p_drop_track=0, p_jitter=0,
                          p_time_shift=0, p_bar_roll=0, p_drop_notes=1.0, max_drop_rate=0.4)
    y = A.random_view(x, np.random.default_rng(0), cfg)
    assert bool((y <= x).all())  # dropping only removes cells
    assert 0.5 < float(A.note_count(y).sum() / A.note_count(x).sum()) < 0.95
    pooled = A.to_dense(A.to_cells(x), torch.float32, time_pool=3)
    ref = x.reshape(x.shape[0], BARS_PER_PHRASE, STEPS_PER_BAR // 3, 3, N_PITCHES, -1).any(dim=3)
    assert torch.equal(pooled.bool(), ref)


def test_cells_from_packed_rows_are_the_cells_of_the_phrases() -> None:
    from midivae.data.store import pack

    rng = np.random.default_rng(4)
    x = rng.random((7, *PHRASE_SHAPE)) < 0.02
    x[2] = False  # an empty phrase
    x[3].reshape(-1)[[0, -1]] = True  # the first and the last cell (bit order at both ends)
    got, want = A.cells_from_packed(pack(x)), A.to_cells(torch.from_numpy(x))
    assert got.n == want.n == 7 and got.sample.size == int(x.sum())
    for name in ("sample", "time", "pitch", "track"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert torch.equal(A.to_dense(got), torch.from_numpy(x))
    with pytest.raises(ValueError, match="packed rows"):
        A.cells_from_packed(pack(x)[:, :-1])
