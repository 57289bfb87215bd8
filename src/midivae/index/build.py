"""Build an index from song sources, add songs to one, remove songs from one.

Songs are read in a small thread pool (reading is I/O and numpy work), encoded in batches of
phrases across songs (a model encodes 256 phrases far faster than 256 calls of one), and written
through :class:`~midivae.index.latent_index.IndexWriter`, so the whole run lands as one atomic
generation or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from midivae.errors import MidiVaeError, NotFoundError, VectorIndexError
from midivae.index.base import Encoder
from midivae.index.encoders import encode_search, reads_tempo, search_layout
from midivae.index.faiss_index import IndexSpec
from midivae.index.latent_index import IndexWriter
from midivae.index.sources import SongSource, content_hash, discover
from midivae.song import Phrases
from midivae.verify import PhraseNotes


@dataclass
class BuildReport:
    """What a build or add did: counts and every skipped song with its reason."""

    index: str
    songs_added: int = 0
    phrases_added: int = 0
    songs_removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or id, reason)
    #: songs added without a known tempo although the encoder's search head reads it (a store
    #: ingested before tempi were kept, a MuseGAN phrase file): searched without that evidence
    songs_without_tempo: int = 0

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            key = reason.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def _read_all(sources: Sequence[SongSource], workers: int) -> Iterator[tuple[SongSource, Phrases | str]]:
    def load(source: SongSource) -> Phrases | str:
        try:
            phrases = source.load()
        except MidiVaeError as exc:
            return str(getattr(exc, "cause", exc))
        if len(phrases) == 0:
            return "no non-empty 4-bar phrase"
        return phrases

    if workers <= 1:
        for s in sources:
            yield s, load(s)
        return
    with ThreadPoolExecutor(workers) as pool:
        # map keeps order and reads ahead while the caller encodes
        yield from zip(sources, pool.map(load, sources))


def _ingest(writer: IndexWriter, encoder: Encoder, sources: Sequence[SongSource], report: BuildReport,
            progress: bool, batch: int, workers: int) -> None:
    pending: list[tuple[SongSource, Phrases]] = []

    def flush() -> None:
        if not pending:
            return
        allp = np.concatenate([p.phrases for _, p in pending])
        tempo = np.concatenate([np.full(len(p), p.tempo) for _, p in pending])
        means = encode_search(encoder, allp, batch=batch, tempo=tempo)
        notes = PhraseNotes.from_phrases(allp)  # what the search's exact verify reads
        if reads_tempo(encoder):
            report.songs_without_tempo += sum(1 for _, p in pending if not np.isfinite(p.tempo))
        start = 0
        for source, phrases in pending:
            n = len(phrases)
            writer.add_song(source.song_id, means[start : start + n], phrases.bar_offsets, title=source.title,
                            path=source.path, source=source.source, content_hash=content_hash(phrases),
                            tempo=phrases.tempo, notes=notes.take(np.arange(start, start + n)))
            start += n
            report.songs_added += 1
            report.phrases_added += n
        pending.clear()

    n_pending = 0
    bar = tqdm(total=len(sources), unit="song", disable=not progress, desc="indexing")
    try:
        for source, result in _read_all(sources, workers):
            bar.update(1)
            if isinstance(result, str):
                report.skipped.append((source.path if source.source != "store" else source.song_id, result))
                continue
            if writer.has_song(source.song_id) or any(s.song_id == source.song_id for s, _ in pending):
                report.skipped.append((source.song_id, "already in the index"))
                continue
            pending.append((source, result))
            n_pending += len(result)
            if n_pending >= batch:
                flush()
                n_pending = 0
            bar.set_postfix(songs=report.songs_added + len(pending), skipped=len(report.skipped))
        flush()
    finally:
        bar.close()


def _some_sources(data: Sequence[str | os.PathLike[str]]) -> list[SongSource]:
    """The songs under ``data``; none at all is the caller's mistake (an empty or wrong folder)."""
    sources = discover(data)
    if not sources:
        raise NotFoundError(f"no MIDI file, LPD .npz file or phrase store under {', '.join(map(str, data))}")
    return sources


def build_index(data: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], encoder: Encoder,
                spec: IndexSpec = IndexSpec(), checkpoint: str = "", overwrite: bool = False,
                progress: bool = False, batch: int = 256, workers: int = 2) -> BuildReport:
    """Encode every phrase of every song under ``data`` into a new index folder ``out``."""
    sources = _some_sources(data)
    report = BuildReport(index=str(out))
    layout = search_layout(encoder)
    with IndexWriter.create(Path(out), encoder.checkpoint_id, layout.width, spec, checkpoint,
                            overwrite=overwrite, layout=layout) as writer:
        _ingest(writer, encoder, sources, report, progress, batch, workers)
        if report.songs_added == 0:
            raise VectorIndexError(f"{out}: no song could be indexed ({len(report.skipped)} skipped)")
    return report


def add_to_index(index: str | os.PathLike[str], data: Sequence[str | os.PathLike[str]], encoder: Encoder,
                 progress: bool = False, batch: int = 256, workers: int = 2) -> BuildReport:
    """Encode and add the songs under ``data``; refuses an encoder other than the index's own, and
    ``data`` that holds no song at all (songs already in the index are skipped, not refused)."""
    sources = _some_sources(data)
    report = BuildReport(index=str(index))
    with IndexWriter.open(Path(index), checkpoint_id=encoder.checkpoint_id,
                          search_id=search_layout(encoder).search_id) as writer:
        _ingest(writer, encoder, sources, report, progress, batch, workers)
    return report


def remove_from_index(index: str | os.PathLike[str], song_ids: Sequence[str]) -> BuildReport:
    """Remove songs by id (all or nothing: an unknown id raises NotFoundError and nothing changes)."""
    report = BuildReport(index=str(index))
    with IndexWriter.open(Path(index)) as writer:
        for song_id in dict.fromkeys(song_ids):
            writer.remove_song(song_id)
            report.songs_removed += 1
    return report
