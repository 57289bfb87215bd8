"""Query chunks on several threads.

The ranking tasks compare chunks of query phrases against a whole index: products, minima over
song groups, partial sorts. numpy and scipy release the GIL in all of them, so the chunks of one
task run in parallel threads (each writes only its own rows), where a scipy sparse product alone
would keep one core busy. BLAS is held to one thread meanwhile, so the threads do not
oversubscribe the cores. Results do not depend on the number of threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")

#: default cap on threads: every thread holds one chunk's distance matrices (hundreds of MB
#: against an index of ~70,000 phrases), so many cores must not mean many copies
MAX_DEFAULT_THREADS = 4
_threads: int | None = None  # set by :func:`threads`; None: the default
_label: str | None = None  # set by :func:`progress`: the progress bar's label; None: no bars


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count() -> int:
    """Threads a chunked loop uses now: set by :func:`threads`, else the cores this process may
    use, at most ``MAX_DEFAULT_THREADS``."""
    return _threads if _threads is not None else min(available_cores(), MAX_DEFAULT_THREADS)


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run the chunked loops inside on ``n`` threads (None: the default; 1: one at a time)."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    before, _threads = _threads, n
    try:
        yield
    finally:
        _threads = before


@contextmanager
def progress(label: str | None) -> Iterator[None]:
    """Show progress bars labelled ``label`` (on stderr) for the long loops inside: query chunks
    (:func:`map_chunks`, more than one chunk), encoding, robustness queries (None: no bars)."""
    global _label
    before, _label = _label, label
    try:
        yield
    finally:
        _label = before


def progress_bar(total: int, shown: bool = True, unit: str = "query"):
    """A tqdm bar of ``total`` items under the current :func:`progress` label (disabled without one)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=_label, unit=unit, disable=_label is None or not shown, leave=False,
                dynamic_ncols=True)


def one_blas_thread():
    """Limit numpy's BLAS to one thread (timings; parallel chunks)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def map_chunks(run: Callable[[np.ndarray], T], n: int, chunk: int) -> list[T]:
    """``run(positions)`` for consecutive chunks of ``range(n)``, results in chunk order."""
    parts = [np.arange(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    workers = min(thread_count(), len(parts))
    with progress_bar(n, shown=len(parts) > 1) as bar:
        if workers <= 1:
            return [_counted(run(p), p, bar) for p in parts]
        with one_blas_thread(), ThreadPoolExecutor(workers, thread_name_prefix="midivae-eval") as pool:
            return [_counted(r, p, bar) for r, p in zip(pool.map(run, parts), parts)]


def _counted(result: T, part: np.ndarray, bar) -> T:
    bar.update(len(part))
    return result
