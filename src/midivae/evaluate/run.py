"""The whole evaluation: load the songs, build every embedding, run every task, write the report.

``run_evaluation(EvalConfig(...))`` is what ``midivae evaluate`` calls. Each method's phrase
vectors are computed once and shared by the tasks; the altered robustness queries are built
once and shared by the methods.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from midivae.errors import CheckpointError, MidiVaeError
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import BASELINE_NAMES, CachedEncoder, make_baselines, model_embeddings
from midivae.evaluate.data import EvalData, flatten, load_eval_data, pick, share_rows
from midivae.evaluate.embedding import Embedding
from midivae.evaluate.parallel import progress, threads
from midivae.evaluate.versions import DEFAULT_PRESET
from midivae.memory import release_freed_memory

TASKS: tuple[str, ...] = ("protocol", "excerpt", "robustness", "genre", "reconstruction", "versions", "cost", "pictures")
#: the tasks that read a method's vectors of every evaluated phrase (the others embed their own)
VECTOR_TASKS: frozenset[str] = frozenset({"excerpt", "robustness", "genre", "cost"})
DEFAULT_LATENT_DIM = 64


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run depends on (saved in metrics.json)."""

    data: Path
    out: Path
    checkpoint: str | None = None  # None: the shipped model when there is one
    use_model: bool = True
    tasks: tuple[str, ...] = TASKS
    baselines: tuple[str, ...] = BASELINE_NAMES
    max_songs: int | None = None
    max_fit_songs: int = 200
    fit_data: Path | None = None
    versions_csv: Path | None = None
    versions_dir: Path | None = None
    versioned_songs: int = 100
    versions_preset: str = DEFAULT_PRESET  # how generated versions differ (midivae.evaluate.versions.VERSION_PRESETS)
    labels_dir: Path | None = None
    protocol_songs: int = T.ORIGINAL_PROTOCOL_SONGS
    excerpt_queries: int | None = T.EXCERPT_QUERIES  # None: every second-half phrase
    robustness_queries: int = 1000
    any_key_queries: int = T.ANY_KEY_QUERIES
    reconstruction_phrases: int = 1000
    latent_dim: int = DEFAULT_LATENT_DIM  # for PCA / random when no model is evaluated
    seed: int = 0
    command: str = ""
    report_path: Path | None = None  # also write the markdown here (links relative to it)
    extra_models: tuple[str, ...] = field(default=())
    split: str = "test"  # the split of a phrase store evaluated
    threads: int | None = None  # threads for the query chunks (midivae.evaluate.parallel); None: its default


def cpu_flags() -> dict[str, bool]:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags}


def load_model_rows(cfg: EvalConfig, log: Callable[[str], None]) -> tuple[list[Embedding], list[CachedEncoder], str]:
    """The model rows (shipped or --checkpoint, plus extras) and each loaded model's encoder
    (``.model``: the model), which its rows share."""
    if not cfg.use_model:
        return [], [], "model not evaluated (--no-model)"
    try:
        from midivae.model.api import load_model
    except ImportError as exc:
        if cfg.checkpoint:
            raise CheckpointError(f"cannot load {cfg.checkpoint}: model API unavailable ({exc})") from None
        return [], [], f"model API unavailable ({exc})"
    rows, encoders = [], []
    paths = [cfg.checkpoint] + list(cfg.extra_models)
    for i, path in enumerate(paths):
        try:
            model = load_model(path)
        except MidiVaeError as exc:
            if path is None:
                return [], [], f"no shipped model ({exc})"
            raise
        except Exception as exc:  # a model package still being written must not stop the baselines
            if path is None:
                return [], [], f"shipped model failed to load ({type(exc).__name__}: {exc})"
            raise CheckpointError(f"cannot load {path}: {exc}") from exc
        name = "model" if i == 0 else f"model_{Path(str(path)).name}"
        encoders.append(CachedEncoder(model))
        rows.extend(model_embeddings(model, name, encoders[-1]))
        log(f"model {name}: latent {model.latent_dim}, checkpoint {getattr(model, 'checkpoint_id', '?')}")
    return rows, encoders, ""


def run_evaluation(cfg: EvalConfig, log: Callable[[str], None] = lambda s: None, bars: bool = False) -> dict:
    """Run the evaluation and write report.md, metrics.json and PNGs under ``cfg.out``
    (``bars``: progress bars on stderr for the tasks' query loops)."""
    from midivae.evaluate.labels import default_labels_dir, single_genre_labels

    t_start = time.perf_counter()
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # what can fail in a second goes before minutes of reading: the checkpoints, the versions CSV
    model_rows, encoders, model_note = load_model_rows(cfg, log)
    real_versions = _versions_csv(cfg) if "versions" in cfg.tasks else None
    if real_versions is not None:
        from midivae.evaluate.versions import read_versions_csv

        read_versions_csv(real_versions[1])
    log(f"reading {cfg.data} ...")  # minutes for thousands of songs: say so before it starts
    data: EvalData = load_eval_data(Path(cfg.data), cfg.max_songs, cfg.fit_data, cfg.max_fit_songs, cfg.seed, split=cfg.split)
    flat = flatten(data.test)
    data = replace(data, test=share_rows(data.test, flat))  # the phrases held once, not twice
    release_freed_memory()  # the songs' own copies (~0.2 GB at 27,000 phrases) back to the kernel
    songs = data.test
    log(f"data: {len(songs)} songs, {len(flat)} phrases evaluated; {len(data.fit)} songs to fit baselines")
    if data.unread_midi:
        log(f"data: the folder's .npz songs are evaluated; {data.unread_midi} MIDI files beside them are not read "
            "(a folder is evaluated as one kind)")
    if data.skipped:  # unreadable files, or songs without a phrase: said, not only counted
        log(f"data: {len(data.skipped)} file{'s' if len(data.skipped) > 1 else ''} skipped, e.g. {data.skipped[0]}")
    if len(flat) and not np.isfinite(flat.tempo).any():
        log("note: no song's tempo is known (a store ingested before tempi were kept?); the model searches without "
            "it; re-ingest the songs for its full quality")

    if model_note:
        log(model_note)
    dims = int(encoders[0].model.latent_dim) if encoders else cfg.latent_dim
    t0 = time.perf_counter()
    methods = model_rows + make_baselines(data.fit, dims, cfg.baselines, cfg.seed)
    log(f"baselines ready ({time.perf_counter() - t0:.1f} s)")

    labels_dir = Path(cfg.labels_dir) if cfg.labels_dir is not None else default_labels_dir()
    labels = single_genre_labels([s.song_id for s in songs], labels_dir) if "genre" in cfg.tasks else {}
    if "genre" in cfg.tasks and not labels_dir.is_dir():
        log(f"genre: no label folder at {labels_dir} (--labels DIR, or set MIDIVAE_DATA); the genre task is skipped")
    queries = T.altered_queries(songs, cfg.robustness_queries, seed=cfg.seed) if "robustness" in cfg.tasks else None
    tmp_dirs: list[Path] = []
    try:  # the generated version folder goes even when writing it is interrupted
        versions, versions_note = _versions(cfg, songs, log, tmp_dirs) if "versions" in cfg.tasks else (None, "")
        release_freed_memory()  # the read-back copies of the songs' own files (see generated_versions)
        with threads(cfg.threads):
            return _run_methods(cfg, out, data, songs, flat, methods, encoders, model_note, dims, labels, labels_dir,
                                queries, versions, versions_note, t_start, log, bars)
    finally:
        for d in tmp_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _run_methods(cfg, out, data, songs, flat, methods, encoders, model_note, dims, labels, labels_dir, queries,
                 versions, versions_note, t_start, log, bars: bool) -> dict:
    from midivae.evaluate import report

    models = [enc.model for enc in encoders]
    results: dict[str, dict] = {}
    vectors_of: dict[str, object] = {}  # only what the pictures show: a sparse method's rows are ~7 KB each
    pictured = report.picture_method(methods).name if "pictures" in cfg.tasks and methods else None
    # every phrase's notes, read once for the methods whose search verifies (as ``vecs`` per method)
    notes = (T.all_notes(flat) if any(m.verify for m in methods) and {"excerpt", "robustness", "cost"} & set(cfg.tasks)
             else None)
    for i, emb in enumerate(methods):
        t_m = time.perf_counter()
        if not bars:  # a log has no bars: say what runs now (a sparse method takes many minutes at scale)
            log(f"{emb.name}: running ({i + 1} of {len(methods)} methods) ...")
        r: dict[str, object] = {"kind": emb.kind, "distance": emb.distance, "notes": emb.notes, **emb.meta,
                                **({"tempo_weight": emb.tempo_weight} if emb.tempo_weight else {})}
        vecs = None  # the phrase vectors, where a task reads them (a versions-only run embeds its files alone)
        if VECTOR_TASKS & set(cfg.tasks) or emb.name == pictured:
            with progress(f"{emb.name}: encoding" if bars else None):
                vecs = T.embed_flat(emb, flat)
        if emb.name == pictured:
            vectors_of[emb.name] = vecs
        steps = {  # versions last: it embeds its own files, so this method's phrase vectors go before it
            "protocol": lambda: T.original_protocol(songs, emb, max_songs=cfg.protocol_songs, seed=cfg.seed),
            "excerpt": lambda: T.excerpt_retrieval(songs, emb, vectors=vecs, notes=notes,
                                                   max_queries=cfg.excerpt_queries, seed=cfg.seed),
            "robustness": lambda: T.robustness(songs, emb, queries=queries, vectors=vecs, seed=cfg.seed,
                                               any_key_queries=cfg.any_key_queries, notes=notes),
            "genre": lambda: T.genre_consistency(songs, emb, labels=labels, seed=cfg.seed,
                                                 vectors=_song_subset_vectors(songs, vecs, labels)),
            "cost": lambda: T.cost(songs, emb, vectors=vecs, seed=cfg.seed, paired=emb.kind == "model", notes=notes),
            "versions": lambda: T.version_identification(versions, emb),
        }
        task_seconds = {"encoding": time.perf_counter() - t_m} if vecs is not None else {}
        for task, step in steps.items():
            if task == "versions":
                vecs = None  # and before the next method's are built (a raw method's: ~1 GB at 100,000 phrases)
            if task in cfg.tasks:
                t_task = time.perf_counter()
                with progress(f"{emb.name}: {task}" if bars else None):
                    r[task] = step()
                task_seconds[task] = time.perf_counter() - t_task
        r["seconds"] = time.perf_counter() - t_m
        r["task_seconds"] = task_seconds
        results[emb.name] = r
        if emb.kind == "model" and all(m.kind != "model" for m in methods[i + 1 :]):
            for enc in encoders:
                enc.clear()  # the model rows shared these encodings; the baselines after them need none
        release_freed_memory()  # and what the method freed goes back to the kernel, not kept in the heap
        log(f"{emb.name}: done in {r['seconds']:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in task_seconds.items()) + ")")

    recon = {}
    if "reconstruction" in cfg.tasks and models:
        t0 = time.perf_counter()
        recon = T.reconstruction(songs, models[0], n_phrases=cfg.reconstruction_phrases,
                                 n_samples=cfg.reconstruction_phrases, seed=cfg.seed)
        log(f"reconstruction: {time.perf_counter() - t0:.1f} s")

    metrics = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "data": {"source": data.source, "built_from": data.built_from, "split_rule": data.split_rule, "n_songs": len(songs),
                 "n_phrases": len(flat), "n_fit_songs": len(data.fit), "skipped_files": len(data.skipped),
                 "unread_midi_files": data.unread_midi,
                 "n_labelled_songs": len(labels), "labels_dir": str(labels_dir), "labels_found": labels_dir.is_dir(),
                 "tempo_known": float(np.isfinite(flat.tempo).mean()) if len(flat) else 0.0},
        "model": {"evaluated": bool(models), "note": model_note,
                  "checkpoint_id": str(getattr(models[0], "checkpoint_id", "")) if models else "",
                  "latent_dim": dims},
        "versions": {"source": versions_note},
        "methods": results,
        "reconstruction": recon,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_flags()},
    }
    if "pictures" in cfg.tasks:
        metrics["pictures"] = report.pictures(out, songs, flat, methods, vectors_of, labels, seed=cfg.seed)
    metrics["targets"] = report.check_targets(metrics)
    metrics["seconds_total"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2, sort_keys=False))
    report.write_report(out, metrics)
    if cfg.report_path is not None:
        report.write_report(out, metrics, Path(cfg.report_path))
    log(f"wrote {out / 'report.md'} ({metrics['seconds_total']:.0f} s)")
    return metrics


def _song_subset_vectors(songs, vecs, labels):
    """Rows of ``vecs`` for the labelled songs only (genre_consistency filters songs the same way)."""
    keep = np.concatenate([np.full(len(s), s.song_id in labels) for s in songs]) if songs else np.zeros(0, bool)
    return vecs[np.nonzero(keep)[0]]


def _versions_csv(cfg: EvalConfig) -> tuple[Path, Path] | None:
    """The folder of real versions and its CSV (--versions-csv/--versions-dir), or None: generated."""
    if cfg.versions_csv is None and cfg.versions_dir is None:
        return None
    folder = Path(cfg.versions_dir) if cfg.versions_dir else Path(cfg.versions_csv).parent
    return folder, Path(cfg.versions_csv) if cfg.versions_csv else folder / "versions.csv"


def _versions(cfg: EvalConfig, songs, log, tmp_dirs: list):
    from midivae.evaluate.versions import VERSION_PRESETS, generated_versions, load_versions

    real_versions = _versions_csv(cfg)
    if real_versions is not None:
        folder, csv_path = real_versions
        vs = load_versions(folder, csv_path)
        note = f"{folder} with {csv_path}"
        if vs.skipped:
            files = f"{len(vs.skipped)} file{'s' if len(vs.skipped) > 1 else ''}"
            note += f"; {files} skipped (unreadable, empty, or in the CSV but not the folder)"
            log(f"versions: skipped {files}, e.g. {vs.skipped[0]}")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="midivae-versions-"))
        tmp_dirs.append(tmp)
        chosen = pick(songs, None, cfg.seed)
        log(f"versions: writing the {len(chosen)} songs as MIDI and reading them back ...")
        preset = VERSION_PRESETS[cfg.versions_preset]
        vs = generated_versions(chosen, tmp, cfg.versioned_songs, cfg.seed, preset)
        changes_form = any((preset.p_beat_shift, preset.p_drop_track, preset.p_time_scale, preset.p_cut_section))
        note = (f"generated: every evaluated song written as MIDI; the first {min(cfg.versioned_songs, len(songs))} "
                f"also as an independently altered re-rendering (preset `{cfg.versions_preset}`, see versions.py); "
                "the rest are distractors. These re-renderings use note-level changes (transposition, re-voicing, "
                "dropped notes, a moved track, jitter, a bar offset) that a model may have been trained to ignore"
                + (", and form changes (bar lines on another beat, a part left out, double or half time, a section "
                   "cut or repeated)" if changes_form else "")
                + (", and half the time another drum part (left out, or thinned with its cymbals swapped)"
                   if preset.p_drum_change > 0 else "")
                + (f"; each re-rendering's tempo is its song's within ±{preset.tempo_jitter:.0%}"
                   if preset.tempo_jitter else "; each file keeps its song's tempo")
                + ", so they can flatter a model; real transcriptions (--versions-csv) are the real test")
    log(f"versions: {len(vs.songs)} files, {vs.n_queries} queries ({note})")
    return vs, note


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if not np.isfinite(v) else v
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x
