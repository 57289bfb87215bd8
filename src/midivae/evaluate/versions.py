"""Version identification data: a folder of MIDI (or LPD-5 ``.npz``) files with a CSV ``file,song``
naming which files are versions (transcriptions) of one song, and a generator that builds such a
folder from songs.

The generator writes each song as MIDI and, for some songs, an independently altered
re-rendering (transposed, re-voiced, notes dropped, a track moved, onsets jittered, started on
another bar), the way two people transcribe one song differently. Every other file is a
distractor.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from midivae.constants import (CYMBALS, DEFAULT_TEMPO, DRUMS, LOWEST_PITCH, LPD_N_PITCHES, MIDI_SUFFIXES, N_PITCHES, PITCHED_TRACKS,
                               STEPS_PER_BAR)
from midivae.errors import InvalidInputError, MidiVaeError, NotFoundError
from midivae.evaluate.data import SongPhrases, find_files, load_store_split_first, read_song_file
from midivae.song import Notes, known_tempo, notes_to_roll, phrases_to_roll, roll_to_notes

#: what a version folder may hold: MIDI files and LPD-5 ``.npz`` pianorolls, mixed or not
VERSION_SUFFIXES: tuple[str, ...] = (".npz", *MIDI_SUFFIXES)
#: header names read as the file column and as the song column (case-insensitive); a CSV of two
#: columns with other names, or with no header at all, is read as (file, song)
FILE_COLUMNS = ("file", "path", "filename", "file_name", "filepath", "file_path", "midi", "midi_file", "midi_path")
SONG_COLUMNS = ("song", "song_id", "group", "work", "work_id", "clique", "clique_id", "cluster", "cluster_id", "label",
                "title", "version_of")


@dataclass(frozen=True)
class VersionSet:
    """Files read into phrases, and the song (group) of each; files not in the CSV are their own."""

    songs: list[SongPhrases]  # song_id = file path relative to the folder
    group: list[str]
    skipped: tuple[str, ...] = ()

    @property
    def n_queries(self) -> int:
        counts: dict[str, int] = {}
        for g in self.group:
            counts[g] = counts.get(g, 0) + 1
        return sum(1 for g in self.group if counts[g] >= 2)


def read_versions_csv(csv_path: Path) -> dict[str, str]:
    """file (as the CSV writes it) -> song. The columns are found by their header names
    (:data:`FILE_COLUMNS`, :data:`SONG_COLUMNS`); a CSV of two columns may have other names or
    no header (its first row is then data when it names a MIDI or ``.npz`` file). Commas, tabs,
    semicolons or bars separate the columns; empty rows and rows starting with ``#`` are skipped."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise NotFoundError(f"{csv_path}: versions CSV not found")
    text = csv_path.read_text(encoding="utf-8-sig", errors="replace")
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO(text), dialect)]
    rows = [r for r in rows if any(r) and not r[0].startswith("#")]
    if not rows:
        raise InvalidInputError(csv_path, "holds no rows (expected file,song)")
    head = [c.lower() for c in rows[0]]
    fcol = next((i for i, c in enumerate(head) if c in FILE_COLUMNS), None)
    scol = next((i for i, c in enumerate(head) if c in SONG_COLUMNS), None)
    body = rows[1:]
    if len(head) == 2 and (fcol is None) != (scol is None):  # one of two named: the other is the other
        fcol, scol = (1 - scol, scol) if fcol is None else (fcol, 1 - fcol)
    elif fcol is None and scol is None and len(head) == 2:
        fcol, scol = 0, 1
        if Path(rows[0][0]).suffix.lower() in VERSION_SUFFIXES or (csv_path.parent / rows[0][0]).is_file():
            body = rows  # no header: the first row is a file and its song
    if fcol is None or scol is None:
        raise InvalidInputError(csv_path, f"needs a file column ({'/'.join(FILE_COLUMNS)}) and a song column "
                                f"({'/'.join(SONG_COLUMNS)}), or just two columns (file, song); its header is "
                                f"{', '.join(rows[0])}")
    return {r[fcol]: r[scol] for r in body if len(r) > max(fcol, scol) and r[fcol] and r[scol]}


def match_files(mapping: dict[str, str], files: Sequence[Path], bases: Sequence[Path]) -> tuple[dict[Path, str], list[str]]:
    """Each CSV file entry's file among ``files``: its path relative to one of ``bases`` (the CSV's
    folder, the version folder) or absolute; else the one file of that name, or of that name
    without its suffix, or in a folder of that name (LPD's ``<MSD id>/<md5>.npz``), compared
    case-insensitively (a name two files share is ambiguous). Returns resolved path -> song, and
    a line per entry that matches no file or several."""
    by_path = {f.resolve(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    by_folder: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name.lower(), []).append(f)
        by_stem.setdefault(f.stem.lower(), []).append(f)
        by_folder.setdefault(f.parent.name.lower(), []).append(f)
    found: dict[Path, str] = {}
    skipped: list[str] = []
    for key, song in mapping.items():
        rel = key.replace("\\", "/")
        hit = next((p for p in ((b / rel).resolve() for b in bases) if p in by_path), None)
        if hit is None:
            name = Path(rel).name.lower()
            cands = by_name.get(name) or by_stem.get(name) or by_folder.get(name) or []
            if len(cands) > 1:
                skipped.append(f"{key}: named in the versions CSV, matches {len(cands)} files by name")
                continue
            hit = cands[0].resolve() if cands else None
        if hit is None:
            skipped.append(f"{key}: named in the versions CSV, not found")
            continue
        found[hit] = song
    return found, skipped


def load_versions(folder: Path, csv_path: Path | None = None) -> VersionSet:
    """Read every MIDI or LPD ``.npz`` file under ``folder`` (one collection may mix them); group
    files by the CSV (default folder/versions.csv; see :func:`read_versions_csv` and
    :func:`match_files`). Unreadable files, and files the CSV names that are not in the folder,
    are listed in ``skipped``."""
    folder = Path(folder)
    csv_path = Path(csv_path) if csv_path is not None else folder / "versions.csv"
    mapping = read_versions_csv(csv_path)
    files = find_files(folder, VERSION_SUFFIXES)
    if not files:
        raise NotFoundError(f"{folder}: no MIDI or .npz files")
    song_of, skipped = match_files(mapping, files, (csv_path.parent, folder))
    out_songs, groups = [], []
    for f in files:
        try:
            song = read_song_file(f)
        except MidiVaeError as exc:
            skipped.append(str(exc))
            continue
        if not len(song):
            skipped.append(f"{f}: no non-empty phrase")
            continue
        rel = str(f.relative_to(folder))
        out_songs.append(SongPhrases(rel, song.packed, song.bar_offsets, song.tempo))
        groups.append(song_of.get(f.resolve(), f"__distractor__/{rel}"))
    found = VersionSet(out_songs, groups, tuple(skipped))
    if not found.n_queries:
        raise InvalidInputError(csv_path, f"no song has two readable versions under {folder} "
                                f"({len(out_songs)} files read, {len(mapping)} named in the CSV, {len(skipped)} skipped"
                                + (f", e.g. {skipped[0]}" if skipped else "") + ")")
    return found


# --------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class AlterConfig:
    """How different a generated re-rendering is from the original.

    The first six kinds (each applied with ``p_each``) are note-level changes of the kind a model
    may be trained to ignore. The ``p_*`` kinds after them change the song's *form* the way real
    transcriptions of one song differ, and are off in the ``basic`` preset: bar lines that fall
    on another beat (a pickup transcribed differently), a part left out, a song written at double
    or half time, a section cut or played twice, another drum part.
    """

    max_transpose: int = 5
    revoice_fraction: float = 0.25  # pitched notes moved by an octave
    drop_fraction: float = 0.15
    jitter_fraction: float = 0.3  # notes whose onset moves by one step
    max_bar_shift: int = 3  # the version starts up to this many bars earlier/later
    p_each: float = 0.5  # each kind of change is applied with this probability (at least one is)
    p_beat_shift: float = 0.0  # shifted by 1-3 beats, so every bar line falls elsewhere
    p_drop_track: float = 0.0  # one pitched track left out (where two or more tracks remain)
    p_time_scale: float = 0.0  # written at double time (every step x2) or half time (/2)
    p_cut_section: float = 0.0  # an 8-bar section removed or played twice
    section_bars: int = 8
    p_drum_change: float = 0.0  # the drum part left out, or thinned to half its notes with its cymbals swapped
    #: the re-rendering's tempo is its song's times a factor drawn within 1 +- this (two people
    #: transcribing one recording rarely set the same BPM; the model's file queries read tempo)
    tempo_jitter: float = 0.0


#: ``basic``: note-level changes only; ``hard``: also the form changes; ``hard-drums`` (the
#: evaluation's default): also another drum part half the time — among the 2,202 store songs raw
#: cosine and chroma find 0.297 / 0.287 of these first, about what the issue quotes for real
#: transcriptions among ~4,000 files (0.32 / 0.28; docs/model_selection.md)
VERSION_PRESETS: dict[str, AlterConfig] = {
    "basic": AlterConfig(),
    "hard": AlterConfig(p_beat_shift=0.7, p_drop_track=0.4, p_time_scale=0.25, p_cut_section=0.5, tempo_jitter=0.04),
    "hard-drums": AlterConfig(p_beat_shift=0.7, p_drop_track=0.4, p_time_scale=0.25, p_cut_section=0.5,
                              p_drum_change=0.5, tempo_jitter=0.04),
}
DEFAULT_PRESET = "hard-drums"


def rerender(roll: np.ndarray, rng: np.random.Generator, cfg: AlterConfig = AlterConfig()) -> np.ndarray:
    """An independently altered version of a song roll ``(steps, 84, 5)``."""
    notes = roll_to_notes(roll)
    n = len(notes)
    track, pitch = notes.track.copy(), notes.pitch.copy()
    start, end = notes.start.copy(), notes.end.copy()
    pitched = track != DRUMS
    kinds = rng.random(6) < cfg.p_each  # transpose, revoice, move, jitter, drop, bar shift
    if not kinds.any():
        kinds[rng.integers(6)] = True
    # transpose pitched notes by a nonzero amount
    shift = int(rng.choice([s for s in range(-cfg.max_transpose, cfg.max_transpose + 1) if s != 0]))
    pitch = np.where(pitched & kinds[0], pitch + shift, pitch)
    # re-voice: some pitched notes an octave up or down
    revoice = pitched & (rng.random(n) < cfg.revoice_fraction) & kinds[1]
    pitch = np.where(revoice, pitch + 12 * rng.choice([-1, 1], size=n), pitch)
    # move one non-empty pitched track onto another pitched track
    used = [t for t in PITCHED_TRACKS if np.any(track == t)]
    if used and kinds[2]:
        src = int(rng.choice(used))
        dst = int(rng.choice([t for t in PITCHED_TRACKS if t != src]))
        track = np.where(track == src, dst, track)
    # quantisation jitter: some onsets one step early or late (length kept)
    jitter = (rng.random(n) < cfg.jitter_fraction) * rng.choice([-1, 1], size=n) * kinds[3]
    start, end = start + jitter, end + jitter
    # drop some notes
    keep = rng.random(n) >= cfg.drop_fraction * kinds[4]
    pitch, keep = _change_drums(track, pitch, keep, rng, cfg.p_drum_change)
    # form changes (off in the basic preset; no random draw when off, so basic stays as it was)
    keep &= _drop_track_mask(track, rng, cfg.p_drop_track)
    idx, start, end = _cut_section(start, end, rng, cfg)
    track, pitch, keep = track[idx], pitch[idx], keep[idx]
    if cfg.p_time_scale > 0 and rng.random() < cfg.p_time_scale:
        if rng.random() < 0.5:  # double time: every step twice as long
            start, end = start * 2, end * 2
        else:  # half time
            start, end = start // 2, np.maximum(end // 2, start // 2 + 1)
    # start on another bar (prepend silence or cut the first bars), and/or on another beat
    bars = int(rng.choice([b for b in range(-cfg.max_bar_shift, cfg.max_bar_shift + 1) if b != 0])) * int(kinds[5])
    beats = int(rng.choice([-3, -2, -1, 1, 2, 3])) if cfg.p_beat_shift > 0 and rng.random() < cfg.p_beat_shift else 0
    offset = bars * STEPS_PER_BAR + beats * (STEPS_PER_BAR // 4)
    start, end = start + offset, end + offset
    keep &= (pitch >= LOWEST_PITCH) & (pitch < LOWEST_PITCH + N_PITCHES) & (start >= 0)
    out = Notes(track[keep], pitch[keep], start[keep], np.maximum(end[keep], start[keep] + 1), tpq=notes.tpq)
    return notes_to_roll(out)


_CYMBALS = np.array(CYMBALS)


def _change_drums(track: np.ndarray, pitch: np.ndarray, keep: np.ndarray, rng: np.random.Generator,
                  p: float) -> tuple[np.ndarray, np.ndarray]:
    """With probability ``p``, another drum part: left out (a third of the time), else half of its
    notes dropped and its cymbals shuffled among themselves (hi-hat written as ride, ...)."""
    if p <= 0 or rng.random() >= p:
        return pitch, keep
    drums = track == DRUMS
    if rng.random() < 1 / 3:
        return pitch, keep & ~drums
    swap = np.arange(LPD_N_PITCHES)  # MIDI pitches
    swap[_CYMBALS] = rng.permutation(_CYMBALS)
    pitch = np.where(drums & (pitch >= 0) & (pitch < LPD_N_PITCHES), swap[np.clip(pitch, 0, LPD_N_PITCHES - 1)], pitch)
    return pitch, keep & ~(drums & (rng.random(track.shape) < 0.5))


def _drop_track_mask(track: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Notes kept when, with probability ``p``, one pitched track is left out (never the last
    remaining track)."""
    keep = np.ones(track.shape, dtype=bool)
    if p <= 0 or rng.random() >= p:
        return keep
    present = np.unique(track)
    candidates = [t for t in PITCHED_TRACKS if t in present]
    if len(present) < 2 or not candidates:
        return keep
    return track != int(rng.choice(candidates))


def _cut_section(start: np.ndarray, end: np.ndarray, rng: np.random.Generator, cfg: AlterConfig):
    """With probability ``p_cut_section``, an aligned ``section_bars`` section is removed (later
    notes move earlier) or played twice (its notes repeated, later notes move later).
    Returns the index of the original note behind every output note, and the new times."""
    idx = np.arange(start.shape[0])
    span = cfg.section_bars * STEPS_PER_BAR
    n_sections = int(start.max(initial=0)) // span
    if cfg.p_cut_section <= 0 or rng.random() >= cfg.p_cut_section or n_sections < 2:
        return idx, start, end
    a = int(rng.integers(0, n_sections)) * span
    inside = (start >= a) & (start < a + span)
    move = np.where(start >= a + span, span, 0)
    if rng.random() < 0.5:  # removed
        kept = ~inside
        return idx[kept], (start - move)[kept], (end - move)[kept]
    rep = idx[inside]
    return (np.concatenate([idx, rep]), np.concatenate([start + move, start[rep] + span]),
            np.concatenate([end + move, end[rep] + span]))


def make_version_folder(
    songs: Sequence[SongPhrases],
    out_dir: Path,
    n_versioned: int | None = None,
    seed: int = 0,
    cfg: AlterConfig = AlterConfig(),
) -> Path:
    """Write ``<id>.mid`` for every song and ``<id>__v2.mid`` (a re-rendering) for the first
    ``n_versioned`` of them (default: half), plus ``versions.csv``. Returns the CSV path."""
    from midivae.io import write_midi

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_versioned = len(songs) // 2 if n_versioned is None else min(n_versioned, len(songs))
    rng = np.random.default_rng(seed)
    tempo_rng = np.random.default_rng([seed, 0x7E4])  # apart: the re-renderings stay as they were
    rows = []
    for i, s in enumerate(songs):
        roll = phrases_to_roll(s.phrases)
        name = _safe(s.song_id)
        tempo = s.tempo if known_tempo(s.tempo) else DEFAULT_TEMPO
        write_midi(out_dir / _own_file(s.song_id), roll, tempo)
        rows.append((_own_file(s.song_id), s.song_id))
        if i < n_versioned:
            alt = rerender(roll, rng, cfg)
            jitter = tempo_rng.uniform(1 - cfg.tempo_jitter, 1 + cfg.tempo_jitter)
            if alt.any():
                write_midi(out_dir / f"{name}__v2.mid", alt, tempo * jitter)
                rows.append((f"{name}__v2.mid", s.song_id))
    csv_path = out_dir / "versions.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "song"])
        w.writerows(rows)
    return csv_path


def generated_versions(
    songs: Sequence[SongPhrases],
    folder: Path,
    n_versioned: int | None = None,
    seed: int = 0,
    cfg: AlterConfig = AlterConfig(),
) -> VersionSet:
    """:func:`make_version_folder` into ``folder``, read back as a :class:`VersionSet`.

    A song's own file reads back as exactly its phrases (phrases -> MIDI -> phrases is exact), so
    such a file holds the song's array rather than its copy: a run holds those phrases once, not
    twice (1.1 GB at 100,000 phrases). Files whose phrases differ keep their own."""
    vs = load_versions(folder, make_version_folder(songs, folder, n_versioned, seed, cfg))
    own = {_own_file(s.song_id): s.packed for s in songs}
    shared = []
    for v in vs.songs:
        original = own.get(v.song_id)
        if original is not None and np.array_equal(v.packed, original):
            v = SongPhrases(v.song_id, original, v.bar_offsets, v.tempo)
        shared.append(v)
    return replace(vs, songs=shared)


def _own_file(song_id: str) -> str:
    """The name of a song's own file (its unaltered rendering) in a generated version folder."""
    return f"{_safe(song_id)}.mid"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]



def validation_version_sets(store: Path, presets: Sequence[str] = ("hard", "hard-drums"), real_csv: Path | None = None,
                            split: str = "validation", folder: Path | None = None) -> dict[str, VersionSet]:
    """The sets the experiments compare version rules on: the ``split`` songs of a phrase store
    re-rendered with each preset among all the store's songs, and, with ``real_csv``, the real
    versions beside it as ``"real"``. The re-renderings are written under ``folder`` (None: a
    temporary folder, removed once they are read: a set holds its phrases in memory)."""
    songs, n_first = load_store_split_first(store, split)
    written = (tempfile.TemporaryDirectory(prefix="midivae-version-sets-") if folder is None
               else contextlib.nullcontext(str(folder)))
    with written as where:
        sets = {p: generated_versions(songs, Path(where) / p, n_first, 0, VERSION_PRESETS[p]) for p in presets}
    if real_csv is not None:
        sets["real"] = load_versions(Path(real_csv).parent, real_csv)
    return sets
