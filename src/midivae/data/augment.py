"""Phrase augmentations: the ways two people transcribe one song differently.

Every function is pure: it takes a batch ``(n, 4, 48, 84, 5)`` (bool or float tensor; a numpy
array is accepted and converted) and returns a new tensor of the same dtype, never touching the
input. Randomness comes only from the ``numpy.random.Generator`` passed in, so a seeded generator
gives the same views twice. Per-sample parameters are drawn in one call per batch (no Python loop
over samples or notes): augmentation runs inside the training step and must cost far less than it.

Transforms work on the coordinates of the on cells (:class:`Cells`, numpy, ~2% of a pianoroll),
not on dense tensors: a dense gather over 80,640 cells per phrase costs seconds per batch, and
small multi-threaded torch ops stall on a busy 2-core machine where numpy stays at ~1 ms.

Time is treated as one axis of ``BARS_PER_PHRASE * STEPS_PER_BAR`` steps, so a note that crosses
a bar line stays one note (dropped or shifted whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from midivae.constants import (
    BARS_PER_PHRASE,
    CYMBALS,
    DRUMS,
    LOWEST_PITCH,
    N_PITCHES,
    N_TRACKS,
    PHRASE_SHAPE,
    PITCHED_TRACKS,
    STEPS_PER_BAR,
    STEPS_PER_PHRASE,
)

_PITCHED = np.zeros(N_TRACKS, dtype=bool)
_PITCHED[list(PITCHED_TRACKS)] = True


def as_batch(x: Tensor | np.ndarray) -> Tensor:
    """A tensor batch ``(n, *PHRASE_SHAPE)`` from a tensor or numpy array (one phrase gets a batch axis)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.dim() == len(PHRASE_SHAPE):
        t = t.unsqueeze(0)
    if tuple(t.shape[1:]) != PHRASE_SHAPE:
        raise ValueError(f"expected a batch (n, {', '.join(map(str, PHRASE_SHAPE))}), got {tuple(t.shape)}")
    return t


@dataclass(frozen=True)
class Cells:
    """The on cells of a batch of ``n`` phrases as int64 coordinate vectors; ``time`` runs over
    the whole phrase (0..191)."""

    n: int
    sample: np.ndarray
    time: np.ndarray
    pitch: np.ndarray
    track: np.ndarray

    def keep(self, mask: np.ndarray) -> "Cells":
        return Cells(self.n, self.sample[mask], self.time[mask], self.pitch[mask], self.track[mask])

    def replace(self, **kw: np.ndarray) -> "Cells":
        """Cells with some coordinates replaced; cells pushed out of the phrase vanish."""
        d = {"sample": self.sample, "time": self.time, "pitch": self.pitch, "track": self.track}
        d.update(kw)
        c = Cells(self.n, **d)
        ok = (c.time >= 0) & (c.time < STEPS_PER_PHRASE) & (c.pitch >= 0) & (c.pitch < N_PITCHES)
        return c if bool(ok.all()) else c.keep(ok)


def to_cells(x: Tensor | np.ndarray) -> Cells:
    """The on (non-zero) cells of a batch."""
    x = as_batch(x)
    s, t, p, k = torch.nonzero(x.reshape(x.shape[0], STEPS_PER_PHRASE, N_PITCHES, N_TRACKS), as_tuple=True)
    return Cells(x.shape[0], s.numpy(), t.numpy(), p.numpy(), k.numpy())


def cells_from_packed(packed: np.ndarray) -> Cells:
    """The on cells of bit-packed rows ``(n, PHRASE_CELLS // 8)`` (``numpy.packbits`` of each
    phrase in C order, as a phrase store keeps them).

    Only the non-zero bytes are expanded (~5% of them): ~15x faster than unpacking the batch
    and scanning all 80,640 cells per phrase, which is what lets the trainer build a batch's
    view from the rows it already holds instead of copying the batch back from the GPU.
    """
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or packed.shape[1] * 8 != STEPS_PER_PHRASE * N_PITCHES * N_TRACKS:
        raise ValueError(f"expected packed rows (n, {STEPS_PER_PHRASE * N_PITCHES * N_TRACKS // 8}), got {packed.shape}")
    flat_bytes = packed.reshape(-1)
    nz = np.flatnonzero(flat_bytes != 0)  # a bool scan: ~3x faster than on the bytes themselves
    bit = np.flatnonzero(np.unpackbits(flat_bytes[nz]) != 0)  # most significant bit first
    flat = nz[bit >> 3] * 8 + (bit & 7)  # cell numbers over the whole batch, row after row
    row_cells = packed.shape[1] * 8
    sample, cell = np.divmod(flat, row_cells)
    time, rest = np.divmod(cell, N_PITCHES * N_TRACKS)
    pitch, track = np.divmod(rest, N_TRACKS)
    return Cells(packed.shape[0], sample, time, pitch, track)


def to_dense(c: Cells, dtype: torch.dtype = torch.bool, time_pool: int = 1) -> Tensor:
    """Cells back to a batch ``(n, 4, 48 // time_pool, 84, 5)``; ``time_pool`` > 1 max-pools
    time on the way (an encoder that pools anyway then never sees the full-size tensor)."""
    steps = STEPS_PER_PHRASE // time_pool
    flat = ((c.sample * steps + c.time // time_pool) * N_PITCHES + c.pitch) * N_TRACKS + c.track
    out = torch.zeros(c.n * steps * N_PITCHES * N_TRACKS, dtype=dtype)
    out[torch.from_numpy(flat)] = 1
    return out.reshape(c.n, BARS_PER_PHRASE, steps // BARS_PER_PHRASE, N_PITCHES, N_TRACKS)


def _per_sample(v, n: int, dtype=np.int64) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.numpy()
    return np.broadcast_to(np.asarray(v, dtype=dtype).reshape(-1), (n,))


def _dense_op(fn):
    """Lift a Cells -> Cells transform to the public dense-in, dense-out form."""

    def run(x, *args, **kw) -> Tensor:
        x = as_batch(x)
        return to_dense(fn(to_cells(x), *args, **kw), x.dtype)

    run.__name__, run.__doc__ = fn.__name__.lstrip("_"), fn.__doc__
    return run


def _transpose(c: Cells, semitones) -> Cells:
    """Pitched tracks moved by ``semitones`` (per sample or one int); notes pushed out of range vanish.

    Drums keep their pitches: on the drum track pitch means instrument, not key.
    """
    s = _per_sample(semitones, c.n)[c.sample]
    return c.replace(pitch=c.pitch + np.where(_PITCHED[c.track], s, 0))


def _time_shift(c: Cells, steps) -> Cells:
    """Whole phrase moved later (positive) or earlier by ``steps``, silence filling the gap."""
    return c.replace(time=c.time + _per_sample(steps, c.n)[c.sample])


def _bar_roll(c: Cells, bars) -> Cells:
    """Bars rotated cyclically by ``bars`` per sample: the same music starting on another bar."""
    k = _per_sample(bars, c.n)[c.sample]
    return c.replace(time=(c.time + k * STEPS_PER_BAR) % STEPS_PER_PHRASE)


def note_ids(c: Cells) -> tuple[np.ndarray, int]:
    """Index of the note (a run of consecutive on steps in one sample/pitch/track) of every cell."""
    key = ((c.sample * N_TRACKS + c.track) * N_PITCHES + c.pitch) * STEPS_PER_PHRASE + c.time
    order = np.argsort(key, kind="stable")
    k = key[order]
    onset = np.ones(k.shape, dtype=bool)
    onset[1:] = k[1:] != k[:-1] + 1
    ids = np.empty(k.shape, dtype=np.int64)
    ids[order] = np.cumsum(onset) - 1
    return ids, int(onset.sum())


def _drop_notes(c: Cells, rate, rng: np.random.Generator) -> Cells:
    """Remove whole notes independently with probability ``rate`` (per sample or scalar)."""
    if c.sample.size == 0:
        return c
    ids, n_notes = note_ids(c)
    r = _per_sample(rate, c.n, np.float64)
    note_sample = np.zeros(n_notes, dtype=np.int64)
    note_sample[ids] = c.sample
    keep_note = rng.random(n_notes) >= r[note_sample]
    return c.keep(keep_note[ids])


def _move_track(c: Cells, src, dst) -> Cells:
    """Notes of track ``src`` merged into track ``dst`` (per sample); ``src == dst`` is a no-op."""
    s, d = _per_sample(src, c.n)[c.sample], _per_sample(dst, c.n)[c.sample]
    return c.replace(track=np.where(c.track == s, d, c.track))


def _drop_track(c: Cells, track) -> Cells:
    """Track ``track`` silenced (per sample); a negative index leaves the sample unchanged."""
    return c.keep(c.track != _per_sample(track, c.n)[c.sample])


def _change_drums(c: Cells, selected: np.ndarray, rng: np.random.Generator) -> Cells:
    """In the ``selected`` samples, another drum part: left out (a third of them), else half of
    its notes dropped and its cymbals permuted among themselves (one permutation per sample)."""
    if c.sample.size == 0 or not selected.any():
        return c
    left_out = selected & (rng.random(c.n) < 1 / 3)
    thinned = selected & ~left_out
    drums = c.track == DRUMS
    ids, n_notes = note_ids(c)
    drop_note = rng.random(n_notes) < 0.5
    keep = ~(drums & (left_out[c.sample] | (thinned[c.sample] & drop_note[ids])))
    cymbals = np.asarray(CYMBALS) - LOWEST_PITCH
    lut = np.tile(np.arange(N_PITCHES), (c.n, 1))  # per-sample pitch map
    lut[:, cymbals] = cymbals[np.argsort(rng.random((c.n, cymbals.size)), axis=1)]
    c = c.keep(keep)
    return c.replace(pitch=np.where((c.track == DRUMS) & thinned[c.sample], lut[c.sample, c.pitch], c.pitch))


def _octave_shift(c: Cells, track, octaves) -> Cells:
    """One track per sample moved by whole octaves (a voicing change); others kept."""
    tr, o = _per_sample(track, c.n)[c.sample], _per_sample(octaves, c.n)[c.sample]
    return c.replace(pitch=c.pitch + np.where(c.track == tr, 12 * o, 0))


def _onset_jitter(c: Cells, max_steps: int, rng: np.random.Generator) -> Cells:
    """Each track of each sample shifted in time by its own offset in ``[-max_steps, max_steps]``:
    tracks recorded or quantised slightly apart."""
    shifts = rng.integers(-max_steps, max_steps + 1, (c.n, N_TRACKS))
    return c.replace(time=c.time + shifts[c.sample, c.track])


transpose = _dense_op(_transpose)
time_shift = _dense_op(_time_shift)
bar_roll = _dense_op(_bar_roll)
drop_notes = _dense_op(_drop_notes)
move_track = _dense_op(_move_track)
drop_track = _dense_op(_drop_track)
octave_shift = _dense_op(_octave_shift)
onset_jitter = _dense_op(_onset_jitter)


def note_count(x) -> np.ndarray:
    """Number of notes per sample (runs of consecutive on steps per pitch and track)."""
    c = to_cells(x)
    ids, n_notes = note_ids(c)
    first = np.zeros(n_notes, dtype=np.int64)
    first[ids] = c.sample
    return np.bincount(first, minlength=c.n)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the random view used by the consistency term.

    Each transform is applied to a sample independently with its probability, in a fixed order.
    The defaults cover the evaluation's alterations (note drops, eighth-note shifts, piano to
    guitar, small transpositions) and the offsets between repeated sections (bar roll).
    """

    p_transpose: float = 0.3
    max_transpose: int = 5
    p_drop_notes: float = 0.5
    max_drop_rate: float = 0.3
    p_time_shift: float = 0.5
    max_time_shift: int = 8
    p_move_track: float = 0.3
    p_drop_track: float = 0.15
    p_octave: float = 0.15
    p_jitter: float = 0.15
    max_jitter: int = 2
    p_bar_roll: float = 0.5
    #: another drum part: left out a third of the time, else half its notes dropped and its
    #: cymbals swapped among themselves (as two transcriptions of one song differ)
    p_drum_change: float = 0.0


def random_view(x, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> Tensor:
    """A randomly altered copy of every phrase in the batch (same dtype and shape)."""
    x = as_batch(x)
    return to_dense(random_cells(to_cells(x), rng, cfg), x.dtype)


def random_cells(c: Cells, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> Cells:
    """:func:`random_view` on coordinates (see :class:`Cells`)."""
    n = c.n
    pick = lambda p: rng.random(n) < p  # noqa: E731
    pitched = np.array(PITCHED_TRACKS)
    if cfg.p_drop_notes > 0:
        rate = rng.random(n) * cfg.max_drop_rate
        c = _drop_notes(c, np.where(pick(cfg.p_drop_notes), rate, 0.0), rng)
    if cfg.p_transpose > 0:
        s = rng.integers(-cfg.max_transpose, cfg.max_transpose + 1, n)
        c = _transpose(c, np.where(pick(cfg.p_transpose), s, 0))
    if cfg.p_octave > 0:
        tr = rng.choice(pitched, n)
        o = np.where(rng.random(n) < 0.5, -1, 1)
        c = _octave_shift(c, tr, np.where(pick(cfg.p_octave), o, 0))
    if cfg.p_move_track > 0:
        src, dst = rng.choice(pitched, n), rng.choice(pitched, n)
        c = _move_track(c, src, np.where(pick(cfg.p_move_track), dst, src))
    if cfg.p_drop_track > 0:
        present = np.zeros((n, N_TRACKS), dtype=bool)
        present[c.sample, c.track] = True
        # drop a track only where at least two are present, so no phrase goes silent
        tr = (rng.random((n, N_TRACKS)) * present).argmax(axis=1)
        ok = pick(cfg.p_drop_track) & (present.sum(axis=1) >= 2)
        c = _drop_track(c, np.where(ok, tr, -1))
    if cfg.p_drum_change > 0:
        c = _change_drums(c, pick(cfg.p_drum_change), rng)
    if cfg.p_jitter > 0 and cfg.max_jitter > 0:
        sel = pick(cfg.p_jitter)
        shifts = rng.integers(-cfg.max_jitter, cfg.max_jitter + 1, (n, N_TRACKS)) * sel[:, None]
        c = c.replace(time=c.time + shifts[c.sample, c.track])
    if cfg.p_time_shift > 0:
        s = rng.integers(-cfg.max_time_shift, cfg.max_time_shift + 1, n)
        c = _time_shift(c, np.where(pick(cfg.p_time_shift), s, 0))
    if cfg.p_bar_roll > 0:
        k = rng.integers(1, BARS_PER_PHRASE, n)
        c = _bar_roll(c, np.where(pick(cfg.p_bar_roll), k, 0))
    return c
