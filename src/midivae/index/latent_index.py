"""A latent index on disk: phrase vectors, song vectors and the catalogue of one generation.

:class:`LatentIndex` is the read side (loads one published generation into memory; the SQLite
catalogue is opened read-only). :class:`IndexWriter` is the write side: it starts from the current
generation (or nothing), applies adds and removes in memory and in a copy of the catalogue, and
publishes the result as the next generation when its ``with`` block ends without error.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midivae.errors import IndexMismatchError, VectorIndexError
from midivae.index import storage
from midivae.index.catalogue import Catalogue, PhraseTable, SongRecord
from midivae.index.base import VectorIndex
from midivae.index.encoders import SearchLayout
from midivae.index.faiss_index import FaissIndex, IndexSpec, normalise
from midivae.verify import PhraseNotes

#: Vector index backends by the name stored in the catalogue (``meta.backend``). A distributed
#: store (Qdrant, Milvus, ...) is one more entry: a class with the VectorIndex methods and a
#: ``load(directory)`` classmethod (its folder may hold just a connection description).
BACKENDS: dict[str, type] = {"faiss": FaissIndex}

CATALOGUE = "catalogue.sqlite"
PHRASES = "phrases"
SONGS = "songs"
#: the whole search vectors of a two-stage index (the phrase index holds their coarse part)
WHOLE = "whole"


@dataclass(frozen=True)
class IndexInfo:
    path: str
    generation: str
    checkpoint_id: str
    checkpoint: str
    #: the model's latent size; ``vector_dims``: the width of a stored search vector (larger
    #: where the model's search head adds a song vector, a bar-order part, fingerprints)
    latent_dim: int
    kind: str
    metric: str
    n_songs: int
    n_phrases: int
    n_dead_slots: int
    created_at: str
    disk_bytes: int
    vector_dims: int = 0
    coarse_dims: int = 0
    shortlist: int = 0
    search_id: str = ""
    #: the leading dims a song vector averages (the latent, or the search head's content block)
    song_dims: int = 0
    #: the tempo term's weight for a query of several phrases (0: none), and the songs whose tempo
    #: the catalogue keeps
    tempo_weight: float = 0.0
    songs_with_tempo: int = 0
    #: whether the catalogue keeps every phrase's notes, which the search's exact verify reads
    #: (midivae.verify; an index built before session 17 keeps none: rebuild it to verify)
    phrase_notes: bool = False


def song_vector(phrase_vectors: np.ndarray, metric: str) -> np.ndarray:
    """A song's vector: the mean of its phrase vectors (of unit vectors, renormalised, for cosine)."""
    if metric == "cosine":
        return normalise(normalise(phrase_vectors).mean(0, keepdims=True))[0]
    return np.asarray(phrase_vectors, dtype=np.float32).mean(0)


class LatentIndex:
    """One published generation of an index folder, loaded for searching."""

    def __init__(self, path: Path, generation: Path, phrases: VectorIndex, songs: VectorIndex,
                 catalogue: Catalogue, whole: VectorIndex | None = None) -> None:
        self.path = Path(path)
        self.generation = generation
        self.phrases = phrases
        self.songs = songs
        self.whole = whole
        self.catalogue = catalogue
        meta = catalogue.meta()
        self.meta = meta
        self.checkpoint_id: str = meta["checkpoint_id"]
        self.layout = lay = SearchLayout.from_meta(meta)
        self.latent_dim = lay.width  # width of a stored search vector
        self.metric: str = meta["metric"]
        self.coarse_dims, self.shortlist, self.search_id = lay.coarse_dims, lay.shortlist, lay.search_id
        self.signature_dims, self.fp_weight, self.song_dims = lay.signature_dims, lay.fp_weight, lay.song_dims
        self._table: PhraseTable | None = None
        self._by_vid: tuple[np.ndarray, np.ndarray] | None = None
        self._tempi: tuple[np.ndarray, np.ndarray] | None = None  # (sorted song keys, their BPM)

    @classmethod
    def open(cls, path: Path, retries: int = 5) -> LatentIndex:
        """Load the current generation (retrying if a writer swaps it away while we open it)."""
        path = Path(path)
        for attempt in range(retries):
            gen = storage.current_generation(path)
            try:
                return cls._load(path, gen)
            except VectorIndexError:
                if attempt + 1 == retries or storage.current_generation(path) == gen:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    @classmethod
    def _load(cls, path: Path, gen: Path) -> LatentIndex:
        if not gen.is_dir():
            raise VectorIndexError(f"{path}: generation {gen.name} is missing")
        catalogue = Catalogue.open(gen / CATALOGUE)
        backend_name = catalogue.meta().get("backend", "faiss")
        backend = BACKENDS.get(backend_name)
        if backend is None:
            raise VectorIndexError(f"{gen}: unknown vector backend {backend_name!r}")
        phrases = backend.load(gen / PHRASES)
        songs = backend.load(gen / SONGS)
        whole = backend.load(gen / WHOLE) if int(catalogue.meta().get("coarse_dims", 0)) else None
        index = cls(path, gen, phrases, songs, catalogue, whole)
        if whole is not None and len(whole) != len(phrases):
            raise VectorIndexError(f"{gen}: coarse and whole vectors disagree")
        if len(phrases) != catalogue.n_phrases() or len(songs) != catalogue.n_songs():
            raise VectorIndexError(f"{gen}: catalogue and vectors disagree")
        return index

    def table(self) -> PhraseTable:
        if self._table is None:
            self._table = self.catalogue.phrase_table()
        return self._table

    def search_vectors(self, vector_ids: np.ndarray) -> np.ndarray:
        """The whole search vectors of stored phrases (what candidate songs are scored on)."""
        return (self.whole or self.phrases).vectors(vector_ids)

    def split_signatures(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Search vectors -> (their coordinates, their fingerprint signatures or None)."""
        if not self.signature_dims:
            return vectors, None
        return vectors[:, : -self.signature_dims], vectors[:, -self.signature_dims :].astype(np.int32)

    def coarse(self, vectors: np.ndarray) -> np.ndarray:
        """The part of search vectors the phrase index scans."""
        return vectors[:, : self.coarse_dims] if self.coarse_dims else vectors

    @property
    def keeps_notes(self) -> bool:
        """Whether the catalogue holds every phrase's notes, which the search's exact verify reads."""
        return self.catalogue.keeps_notes()

    def phrase_notes(self, vector_ids: np.ndarray) -> PhraseNotes:
        """The notes of stored phrases, in the order asked."""
        return PhraseNotes.from_blobs(self.catalogue.phrase_notes(vector_ids))

    def song_keys_of(self, vector_ids: np.ndarray) -> np.ndarray:
        """Song key of each phrase vector id (all must be in the index)."""
        if self._by_vid is None:
            t = self.table()
            order = np.argsort(t.vector_ids, kind="stable")
            self._by_vid = (t.vector_ids[order], t.song_keys[order])
        sorted_vids, keys = self._by_vid
        pos = np.minimum(np.searchsorted(sorted_vids, vector_ids), max(sorted_vids.size - 1, 0))
        if sorted_vids.size == 0 or (sorted_vids[pos] != vector_ids).any():
            raise VectorIndexError(f"{self.path}: vector ids missing from the catalogue")
        return keys[pos]

    def _known_tempi(self) -> tuple[np.ndarray, np.ndarray]:
        """The catalogue's known tempi as (sorted song keys, BPM), read once."""
        if self._tempi is None:
            known = sorted(self.catalogue.song_tempi().items())
            self._tempi = (np.array([k for k, _ in known], dtype=np.int64), np.array([v for _, v in known], dtype=np.float64))
        return self._tempi

    def song_tempi(self, keys: np.ndarray) -> np.ndarray:
        """Tempo (BPM) of each song key; NaN where unknown (a search scores a few hundred candidate
        songs per query: one searchsorted, no lookup per song)."""
        known, bpm = self._known_tempi()
        keys = np.asarray(keys, dtype=np.int64).ravel()
        if not len(known):
            return np.full(len(keys), np.nan)
        pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        return np.where(known[pos] == keys, bpm[pos], np.nan)

    def song_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every song id with its song-level vector (mean of its phrase vectors; see song_vector)."""
        keys = self.songs.ids()
        records = self.catalogue.by_keys([int(k) for k in keys])
        return [records[int(k)].song_id for k in keys], self.songs.vectors(keys)

    def song(self, song_id: str) -> SongRecord:
        return self.catalogue.get(song_id)

    def check_encoder(self, checkpoint_id: str, search_id: str = "") -> None:
        if checkpoint_id != self.checkpoint_id:
            raise IndexMismatchError(
                f"{self.path}: index was built by checkpoint {self.checkpoint_id!r}, "
                f"not {checkpoint_id!r}; rebuild it or pass its checkpoint")
        if search_id != self.search_id:
            raise IndexMismatchError(
                f"{self.path}: index was built with search head {self.search_id or '(none)'!r}, the checkpoint "
                f"now has {search_id or '(none)'!r}; rebuild the index")

    def info(self) -> IndexInfo:
        disk = sum(f.stat().st_size for f in self.generation.rglob("*") if f.is_file())
        return IndexInfo(
            path=str(self.path), generation=self.generation.name, checkpoint_id=self.checkpoint_id,
            checkpoint=self.meta.get("checkpoint", ""),
            latent_dim=self.layout.latent_dim,
            kind=getattr(getattr(self.phrases, "spec", None), "kind", self.meta.get("backend", "?")),
            metric=self.metric, n_songs=self.catalogue.n_songs(),
            n_phrases=len(self.phrases), n_dead_slots=int(getattr(self.phrases, "n_dead", 0)),
            created_at=self.meta.get("created_at", ""), disk_bytes=disk, vector_dims=self.latent_dim,
            coarse_dims=self.coarse_dims,
            shortlist=self.shortlist, search_id=self.search_id, song_dims=self.song_dims,
            tempo_weight=self.layout.tempo_weight, songs_with_tempo=len(self._known_tempi()[0]),
            phrase_notes=self.keeps_notes)

    def close(self) -> None:
        self.catalogue.close()

    def __enter__(self) -> LatentIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class IndexWriter:
    """Apply adds and removes to an index folder, published atomically on success.

    ``with IndexWriter.create(path, ...) as w`` starts a new index (or replaces one with
    ``overwrite``); ``with IndexWriter.open(path) as w`` continues the current generation.
    """

    def __init__(self, path: Path, checkpoint_id: str, latent_dim: int, spec: IndexSpec | None,
                 checkpoint: str, create: bool, overwrite: bool = False, layout: SearchLayout | None = None,
                 search_id: str = "") -> None:
        self.path = Path(path)
        self._create = create
        self._overwrite = overwrite
        self._spec = spec
        self._checkpoint_id = checkpoint_id
        self._checkpoint = checkpoint
        self._latent_dim = latent_dim
        self._layout = layout or SearchLayout(latent_dim, song_dims=latent_dim)
        self._search_id = search_id if layout is None else layout.search_id
        self._stack: list = []
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._backend = "faiss"
        self.added: list[str] = []
        self.removed: list[str] = []

    @classmethod
    def create(cls, path: Path, checkpoint_id: str, latent_dim: int, spec: IndexSpec = IndexSpec(),
               checkpoint: str = "", overwrite: bool = False, backend: str = "faiss",
               layout: SearchLayout | None = None) -> IndexWriter:
        """A new index of ``latent_dim``-wide vectors; ``layout`` (its width must be ``latent_dim``)
        makes it two-stage (see :class:`~midivae.index.encoders.SearchLayout`)."""
        if backend not in BACKENDS:
            raise VectorIndexError(f"unknown vector backend {backend!r} (known: {', '.join(BACKENDS)})")
        if layout is not None and layout.width != latent_dim:
            raise VectorIndexError(f"search layout is {layout.width} dims wide, vectors {latent_dim}")
        writer = cls(path, checkpoint_id, latent_dim, spec, checkpoint, create=True, overwrite=overwrite, layout=layout)
        writer._backend = backend
        return writer

    @classmethod
    def open(cls, path: Path, checkpoint_id: str | None = None, search_id: str = "") -> IndexWriter:
        """Continue an index; with ``checkpoint_id`` refuse one built by another checkpoint (or
        another search head than ``search_id``)."""
        return cls(path, checkpoint_id or "", 0, None, "", create=False, search_id=search_id)

    def __enter__(self) -> IndexWriter:
        lock = storage.writer_lock(self.path)
        lock.__enter__()
        self._stack.append(lock)
        try:
            self._start()
        except BaseException:
            lock.__exit__(None, None, None)
            self._stack.clear()
            raise
        return self

    def _start(self) -> None:
        exists = storage.is_index(self.path)
        if self._create and exists and not self._overwrite:
            raise VectorIndexError(f"{self.path}: an index is already there (use --force to replace it)")
        if self._create and not exists and self.path.exists() and any(
                p for p in self.path.iterdir() if p.name != ".lock"):
            raise VectorIndexError(f"{self.path}: folder exists and is not an index")
        gen_cm = storage.new_generation(self.path)
        self._work = gen_cm.__enter__()
        self._stack.append(gen_cm)
        if self._create:
            lay = self._layout
            self.catalogue = Catalogue.create(self._work / CATALOGUE, {
                "checkpoint_id": self._checkpoint_id, "checkpoint": self._checkpoint,
                "metric": self._spec.metric, "backend": self._backend, **lay.to_meta()})
            make = BACKENDS[self._backend]
            exact = IndexSpec(kind="exact", metric=self._spec.metric)
            self.phrases = make(lay.coarse_dims or self._latent_dim, self._spec)
            self.songs = make(lay.song_dims or self._latent_dim, exact)
            # the whole vectors are only looked up (never searched): stored as they are ("l2" does
            # not normalise), so fingerprint columns keep their exact values
            self.whole = make(self._latent_dim, IndexSpec(kind="exact", metric="l2")) if lay.coarse_dims else None
        else:
            current = LatentIndex.open(self.path)
            try:
                if self._checkpoint_id:
                    current.check_encoder(self._checkpoint_id, self._search_id)
                self.phrases, self.songs, self.whole = current.phrases, current.songs, current.whole
            finally:
                current.close()
            shutil.copyfile(current.generation / CATALOGUE, self._work / CATALOGUE)
            self.catalogue = Catalogue.open(self._work / CATALOGUE, writable=True)
        meta = self.catalogue.meta()
        self.checkpoint_id = meta["checkpoint_id"]
        self.metric = meta["metric"]
        self.layout = SearchLayout.from_meta(meta)
        self.latent_dim = self.layout.width

    def __exit__(self, exc_type, exc, tb) -> None:
        gen_cm = self._stack.pop() if len(self._stack) == 2 else None
        lock = self._stack.pop()
        try:
            if gen_cm is not None:
                if exc_type is None:
                    self._flush()
                    self.catalogue.commit_and_close()
                    self.phrases.save(self._work / PHRASES)
                    self.songs.save(self._work / SONGS)
                    if self.whole is not None:
                        self.whole.save(self._work / WHOLE)
                    gen_cm.__exit__(None, None, None)
                else:
                    self.catalogue.close()
                    gen_cm.__exit__(exc_type, exc, tb)
        finally:
            lock.__exit__(None, None, None)

    # ---- edits ----------------------------------------------------------------------------------
    def has_song(self, song_id: str) -> bool:
        return self.catalogue.find(song_id) is not None

    def add_song(self, song_id: str, vectors: np.ndarray, bar_offsets: np.ndarray, *, title: str = "",
                 path: str = "", source: str = "", content_hash: str = "", tempo: float = float("nan"),
                 notes: PhraseNotes | None = None) -> None:
        """Add one song's phrase vectors; ``notes`` (its phrases' notes) let the search verify its
        near-tied candidates (midivae.verify): a song added without them turns that off for the index."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.latent_dim or len(vectors) != len(bar_offsets):
            raise VectorIndexError(f"song {song_id!r}: expected ({len(bar_offsets)}, {self.latent_dim}) vectors, "
                                   f"got {vectors.shape}")
        if len(vectors) == 0:
            raise VectorIndexError(f"song {song_id!r} has no phrases")
        key, vids = self.catalogue.add_song(song_id, title or song_id, path, source, content_hash, bar_offsets, tempo,
                                            notes.to_blobs() if notes is not None else None)
        self._pending.append((key, vids, vectors))
        self.added.append(song_id)

    def _flush(self) -> None:
        """Hand buffered songs to the vector indexes in one add (one IVF training, no O(n^2) copies)."""
        if not self._pending:
            return
        keys = np.array([p[0] for p in self._pending], dtype=np.int64)
        vids = np.concatenate([p[1] for p in self._pending])
        vectors = np.concatenate([p[2] for p in self._pending])
        if self.whole is not None:
            self.whole.add(vids, vectors)
        coarse, song_dims = self.layout.coarse_dims, self.layout.song_dims
        self.phrases.add(vids, vectors[:, :coarse] if coarse else vectors)
        self.songs.add(keys, np.stack([song_vector(p[2][:, :song_dims], self.metric) for p in self._pending]))
        self._pending = []

    def remove_song(self, song_id: str) -> None:
        self._flush()
        key, vids = self.catalogue.remove_song(song_id)
        self.phrases.remove(vids)
        if self.whole is not None:
            self.whole.remove(vids)
        self.songs.remove(np.array([key]))
        self.removed.append(song_id)
