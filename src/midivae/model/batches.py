"""Training batches built ahead of the model, on host threads.

A batch is its train rows (two phrases of one song side by side when the model wants song
pairs), their bit-packed bytes, and, for a model that compares each phrase with an altered copy,
that copy (its *view*). Building the view is numpy work on the phrases' on cells; done inside the
loss it copied every batch back from the GPU and left the GPU idle meanwhile (an H100 trained
slower than 16 CPU cores). Here the view comes from the packed rows the trainer already holds,
and ``threads`` > 0 builds the next batches while the device trains on this one.

Every random draw of a batch is seeded by ``(seed, epoch, batch)``, so the batches, and the run,
do not depend on the number of threads or on the device.
"""

from __future__ import annotations

import collections
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from midivae.data.augment import cells_from_packed

if TYPE_CHECKING:
    from midivae.model.base import PhraseVAE
    from midivae.model.train import Splits

#: the view's random stream, apart from the song partners' (both seeded by the batch)
_VIEW_STREAM = 0x71E3


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class Batch:
    number: int
    rows: np.ndarray
    packed: torch.Tensor  # uint8 rows (n, 10080), pinned when bound for a GPU
    view: torch.Tensor | None  # what ``model.loss(view=...)`` takes, or None
    song_pairs: bool  # rows i and i + n // 2 are two phrases of one song


def auto_loader_threads(requested: int, device: torch.device) -> int:
    """``requested`` when >= 0; else none on a CPU (its cores train) and up to 4 beside a GPU."""
    if requested >= 0:
        return requested
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def make_batch(
    model: PhraseVAE, splits: Splits, perm: np.ndarray, batch_size: int, seed: int, epoch: int, number: int,
    pin: bool = False,
) -> Batch:
    """Batch ``number`` of an epoch whose shuffle is ``perm``."""
    rows = np.sort(perm[number * batch_size : (number + 1) * batch_size])
    pairs = model.wants_song_pairs and rows.size >= 4
    if pairs:  # rows i and i + h: two phrases of one song
        anchors = rows[: rows.size // 2]
        rows = np.concatenate([anchors, splits.song_partners(anchors, np.random.default_rng(batch_seed(seed, epoch, number)))])
    packed = splits.train[rows]
    view = None
    if model.wants_views and rows.size > 1:
        view = model.make_view(cells_from_packed(packed), np.random.default_rng([seed, epoch, number, _VIEW_STREAM]))
    packed_t = torch.from_numpy(packed)
    if pin:
        packed_t = packed_t.pin_memory()
        view = view.pin_memory() if view is not None else None
    return Batch(number, rows, packed_t, view, pairs)


def epoch_batches(
    model: PhraseVAE, splits: Splits, perm: np.ndarray, batch_size: int, seed: int, epoch: int,
    start: int, stop: int, threads: int = 0, pin: bool = False,
) -> Iterator[Batch]:
    """Batches ``start .. stop - 1`` of an epoch in order; with ``threads`` > 0 up to
    ``2 * threads`` of them are built ahead (leaving the loop early cancels the rest)."""
    make = functools.partial(make_batch, model, splits, perm, batch_size, seed, epoch, pin=pin)
    if threads <= 0:
        for number in range(start, stop):
            yield make(number)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="midivae-batches")
    try:
        ahead: collections.deque = collections.deque()
        following = start
        while following < stop or ahead:
            while following < stop and len(ahead) < 2 * threads:
                ahead.append(pool.submit(make, following))
                following += 1
            yield ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
