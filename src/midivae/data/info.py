"""Summary statistics of a phrase store (what ``midivae info`` prints)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from midivae.constants import BARS_PER_PHRASE, N_TRACKS, TRACK_NAMES
from midivae.data.store import SPLITS, PhraseStore, note_counts

DENSITY_SAMPLE = 2000


@dataclass(frozen=True)
class StoreInfo:
    path: str
    phrases: int
    songs: int
    duplicate_songs: int
    sources: int
    skipped_sources: dict[str, int]
    split_songs: dict[str, int]
    split_phrases: dict[str, int]
    track_usage: dict[str, float]  # share of phrases in which each track plays
    notes_per_bar: dict[str, float]  # mean note onsets per bar, per track (over phrases where it plays)
    active_cells: float  # share of the 80,640 cells that are on, mean over phrases
    size_bytes: int
    songs_with_tempo: int = 0  # songs whose tempo the store keeps (the model's search reads it)
    median_tempo: float | None = None  # BPM, over those songs

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def store_info(store: PhraseStore, seed: int = 0) -> StoreInfo:
    """Counts from the manifest; densities from a fixed random sample of phrases."""
    table = store.phrase_table()
    songs = store.songs()
    sources = store.sources()
    masks = table["track_mask"].astype(np.int64) if len(store) else np.zeros(0, np.int64)
    plays = (masks[:, None] >> np.arange(N_TRACKS)) & 1 if len(store) else np.zeros((0, N_TRACKS))
    usage = plays.mean(axis=0) if len(store) else np.zeros(N_TRACKS)

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(store), size=min(DENSITY_SAMPLE, len(store)), replace=False))
    per_track = np.zeros(N_TRACKS)
    active = 0.0
    if sample.size:
        phrases = store.phrases(sample)
        active = float(phrases.mean())
        for t in range(N_TRACKS):
            track = phrases[..., t : t + 1]
            playing = track.reshape(len(sample), -1).any(axis=1)
            if playing.any():
                per_track[t] = note_counts(track[playing]).mean() / BARS_PER_PHRASE
    split_songs = Counter(s["split"] for s in songs if s["duplicate_of"] is None)
    split_phrases = Counter(table["split"].tolist()) if len(store) else Counter()
    skipped = Counter(
        (s["reason"] or "").split(" (", 1)[0] for s in sources if s["status"] == "skipped"
    )
    size = sum(p.stat().st_size for p in store.path.iterdir() if p.is_file())
    firsts = [int(s["first_row"]) for s in songs if s["duplicate_of"] is None and s["first_row"] is not None]
    tempi = store.tempi(firsts) if firsts else np.zeros(0)
    known = tempi[np.isfinite(tempi)]
    return StoreInfo(
        path=str(store.path),
        phrases=len(store),
        songs=sum(1 for s in songs if s["duplicate_of"] is None),
        duplicate_songs=sum(1 for s in songs if s["duplicate_of"] is not None),
        sources=len(sources),
        skipped_sources=dict(skipped),
        split_songs={k: split_songs.get(k, 0) for k in SPLITS},
        split_phrases={k: split_phrases.get(k, 0) for k in SPLITS},
        track_usage={n: round(float(u), 4) for n, u in zip(TRACK_NAMES, usage)},
        notes_per_bar={n: round(float(d), 2) for n, d in zip(TRACK_NAMES, per_track)},
        active_cells=round(active, 5),
        size_bytes=size,
        songs_with_tempo=int(known.size),
        median_tempo=round(float(np.median(known)), 1) if known.size else None,
    )
