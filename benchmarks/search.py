"""Search benchmark: latency at scale, end-to-end search by a MIDI file, latent vs raw pianoroll.

One run prints one table (markdown) after the CPU flags. Sections:

* ``scale``: single-query latency p50/p99 over N random Gaussian vectors (N = 10k, 100k, 1M;
  dimension ``--dim``, default the model's latent size), exact (flat) and HNSW, through
  :class:`midivae.index.FaissIndex` (what ``midivae search`` uses). efSearch is tuned per N to the
  smallest value in a ladder with recall@10 >= 0.95 against exact. HNSW graphs are cached under
  ``--cache`` (building 1M takes minutes on 2 cores).
* ``e2e``: ``search(index, FILE)`` for a ~3-minute MIDI file against an index of real songs:
  read + cut + encode + rank, p50/p99, with the parts timed separately.
* ``raw``: the excerpt task of the evaluation issue (index the phrases of the first half of each
  song, query with each phrase of its second half, song distance = nearest phrase): Hit@1 and
  time per query of latent search vs brute-force cosine over raw pianorolls (80,640 cells per
  phrase, as a sparse matrix: the fastest raw comparison we have), and the multi-phrase variant
  (a song's whole second half as one query) that decides the ranking rule (mean vs nearest).

Usage::

    python benchmarks/search.py                    # everything (1M HNSW cached after the first run)
    python benchmarks/search.py --quick            # 10k and 100k only, 300 songs
    python benchmarks/search.py --checkpoint builtin:bar-profile:64
"""

from __future__ import annotations

import argparse
import hashlib
import os

# Single queries on a shared 2-core machine: one BLAS thread (set before numpy loads OpenBLAS).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from midivae.constants import PHRASE_CELLS
from midivae.errors import MidiVaeError
from midivae.index import FaissIndex, IndexSpec, LatentIndex
from midivae.index.encoders import BAR_PROFILE, encode_means, encode_search, resolve_encoder, search_layout
from midivae.index.search import search

ROWS: list[tuple[str, str, str, str, str]] = []
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)


def row(item: str, size: str, p50: str = "", p99: str = "", note: str = "") -> None:
    ROWS.append((item, size, p50, p99, note))
    print(f"  .. {item} | {size} | {p50} | {p99} | {note}", file=sys.stderr, flush=True)


def cpu_flags() -> str:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), platform.processor())
    show = {f: (f in flags) for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
    return f"{model}; {os.cpu_count()} CPUs; " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in show.items()) \
        + f"; faiss {faiss.__version__} ({faiss.get_compile_options().strip()})"


def timed(fn, repeats: int) -> np.ndarray:
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t
    return out * 1e3


def pct(ms: np.ndarray) -> tuple[str, str]:
    return f"{np.percentile(ms, 50):.3f}", f"{np.percentile(ms, 99):.3f}"


def recall_at_10(a: np.ndarray, e: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, e)]))


# ---- scale ------------------------------------------------------------------------------------------
def real_vectors(store_path: Path, encoder, cache: Path) -> np.ndarray:
    """Encoder means of every phrase of the store (cached per checkpoint)."""
    path = cache / f"real-{encoder.checkpoint_id.replace('/', '_').replace(':', '_')}.npy"
    if path.exists():
        return np.load(path)
    from midivae.data.store import PhraseStore

    store = PhraseStore.open(store_path)
    rows = store.rows()
    out = np.concatenate([encode_means(encoder, store.phrases(rows[a : a + 1024])) for a in range(0, len(rows), 1024)])
    np.save(path, out)
    return out


def synthetic(kind: str, n: int, dim: int, real: np.ndarray | None, seed: int) -> np.ndarray:
    """``gaussian``: iid N(0, I), the worst case for any ANN index (no structure at all).
    ``real-like``: a real phrase vector drawn at random plus Gaussian noise whose norm is half the
    median nearest-neighbour distance of the real vectors: clusters shaped like real embeddings."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, dim)).astype(np.float32)
    probe = FaissIndex(real.shape[1], IndexSpec(kind="exact", metric="l2"))
    probe.add(np.arange(len(real)), real)
    nn = probe.search(real[rng.choice(len(real), 500, replace=False)], 2)[0][:, 1]
    sigma = 0.5 * float(np.median(nn)) / np.sqrt(real.shape[1])
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for a in range(0, n, 100_000):
        m = min(100_000, n - a)
        out[a : a + m] = real[rng.integers(0, len(real), m)] + sigma * rng.standard_normal((m, real.shape[1]))
    return out


def scale(sizes: list[int], kinds: list[str], dim: int, real: np.ndarray | None, cache: Path, n_queries: int,
          hnsw_m: int, ef_construction: int, build_threads: int) -> None:
    for kind in kinds:
        d = dim if kind == "gaussian" else real.shape[1]
        queries = synthetic(kind, n_queries, d, real, seed=1)
        for n in sizes:
            base = synthetic(kind, n, d, real, seed=n)
            ids = np.arange(n, dtype=np.int64)
            exact = FaissIndex(d, IndexSpec(kind="exact", metric="l2"))
            exact.add(ids, base)
            faiss.omp_set_num_threads(1)  # single queries: no thread hand-off
            ms = timed(lambda i: exact.search(queries[i : i + 1], 10), n_queries)
            _, truth = exact.search(queries, 10)
            row(f"query latency, exact (brute force L2), {kind}", f"{n:,} x {d}", *pct(ms), "recall@10 = 1")
            del exact

            # real-like vectors depend on the encoder: key the cached graph by their content too
            tag = "gauss" if kind == "gaussian" else f"real-{hashlib.blake2b(real.tobytes(), digest_size=6).hexdigest()}"
            path = cache / f"hnsw-{tag}-n{n}-d{d}-M{hnsw_m}-efc{ef_construction}"
            t0 = time.perf_counter()
            if (path / "index.json").exists():
                hnsw = FaissIndex.load(path)
                built = "graph from cache"
            else:
                faiss.omp_set_num_threads(build_threads)  # 1 on a shared box: parallel HNSW inserts spin on locks
                hnsw = FaissIndex(d, IndexSpec(kind="hnsw", metric="l2", hnsw_m=hnsw_m, ef_construction=ef_construction))
                hnsw.add(ids, base)
                hnsw.save(path)
                built = f"built in {time.perf_counter() - t0:.0f} s"
            del base
            faiss.omp_set_num_threads(1)
            chosen = None
            for ef in EF_LADDER:
                _, got = hnsw.search(queries, 10, ef_search=ef)
                rec = recall_at_10(got, truth)
                if rec >= 0.95:
                    chosen = (ef, rec)
                    break
            ef, rec = chosen or (EF_LADDER[-1], rec)
            ms = timed(lambda i: hnsw.search(queries[i : i + 1], 10, ef_search=ef), n_queries)
            row(f"query latency, HNSW, {kind}", f"{n:,} x {d}", *pct(ms),
                f"M={hnsw_m}, efSearch={ef}, recall@10={rec:.3f}; {built}")
            del hnsw


# ---- real phrases -----------------------------------------------------------------------------------
def load_songs(store_path: Path | None, lpd_root: Path, n_songs: int) -> list[tuple[str, np.ndarray, float]]:
    """(song id, phrases, tempo) for n songs with >= 2 phrases, chosen at random (seed 0)."""
    rng = np.random.default_rng(0)
    if store_path is not None and store_path.is_dir():
        from midivae.data.store import PhraseStore

        store = PhraseStore.open(store_path)
        songs = [s for s in store.songs() if not s["duplicate_of"] and (s["n_phrases"] or 0) >= 2]
        pick = rng.choice(len(songs), min(n_songs, len(songs)), replace=False)
        out = []
        for i in sorted(pick):
            s = songs[i]
            rows = np.arange(s["first_row"], s["first_row"] + s["n_phrases"])
            out.append((s["song_id"], store.phrases(rows), float(store.tempi(rows[:1])[0])))
        return out
    from midivae.io import read_lpd
    from midivae.song import cut_phrases

    files = sorted(lpd_root.rglob("*.npz"))
    out = []
    for i in rng.permutation(len(files)):
        cut = cut_phrases(read_lpd(files[i]))
        if len(cut) >= 2:
            out.append((files[i].parent.name, cut.phrases, cut.tempo))
        if len(out) == n_songs:
            break
    return out


def song_hits(dist: np.ndarray, owners: np.ndarray, n_songs: int, truth: np.ndarray, rng) -> float:
    """Hit@1 with song distance = min over its phrases; ties broken at random (counted in expectation)."""
    order = np.argsort(owners, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(owners[order])) + 1]
    per_song = np.minimum.reduceat(dist[:, order], starts, axis=1)
    best = per_song.min(axis=1, keepdims=True)
    tied = np.isclose(per_song, best, atol=1e-6)
    return float(np.mean(tied[np.arange(len(truth)), truth] / tied.sum(axis=1)))


def raw_matrix(phrases: np.ndarray) -> sp.csr_matrix:
    """Rows = phrases as 80,640 binary cells, L2-normalised (cosine = dot product)."""
    flat = phrases.reshape(len(phrases), -1)
    rows, cols = np.nonzero(flat)
    counts = np.bincount(rows, minlength=len(phrases)).astype(np.float32)
    data = (1.0 / np.sqrt(np.maximum(counts, 1)))[rows].astype(np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(phrases), PHRASE_CELLS))


def excerpt(songs, encoder, n_time_queries: int) -> dict:
    """The excerpt task for raw pianorolls and latent vectors; per-query times; the two song rules."""
    rng = np.random.default_rng(0)
    idx_p, idx_owner, q_p, q_owner = [], [], [], []
    for s, (_, ph, _) in enumerate(songs):
        half = (len(ph) + 1) // 2
        idx_p.append(ph[:half]); idx_owner += [s] * half
        q_p.append(ph[half:]); q_owner += [s] * (len(ph) - half)
    idx_p, q_p = np.concatenate(idx_p), np.concatenate(q_p)
    idx_owner, q_owner = np.array(idx_owner), np.array(q_owner)
    tempo = np.array([t for _, _, t in songs])  # the search head reads each song's tempo
    out = {"n_songs": len(songs), "n_indexed": len(idx_p), "n_queries": len(q_p)}

    # latent: encode both halves, exact cosine index
    t = time.perf_counter()
    idx_v = encode_means(encoder, idx_p)
    q_v = encode_means(encoder, q_p)
    out["encode_per_s"] = (len(idx_p) + len(q_p)) / (time.perf_counter() - t)
    lat = FaissIndex(encoder.latent_dim, IndexSpec(kind="exact", metric="cosine"))
    lat.add(np.arange(len(idx_v)), idx_v)
    lat_d = lat.distances_to(q_v, np.arange(len(idx_v)))
    out["latent_hit1"] = song_hits(lat_d, idx_owner, len(songs), q_owner, rng)
    faiss.omp_set_num_threads(1)
    out["latent_ms"] = timed(lambda i: lat.search(q_v[i : i + 1], 50), min(n_time_queries, len(q_v)))

    # latent through HNSW (what a large collection would use): top-1 phrase decides the song
    hn = FaissIndex(encoder.latent_dim, IndexSpec(kind="hnsw", metric="cosine", ef_search=64))
    hn.add(np.arange(len(idx_v)), idx_v)
    top1 = hn.search(q_v, 1)[1][:, 0]
    out["hnsw_hit1"] = float(np.mean(idx_owner[top1] == q_owner))
    out["hnsw_ms"] = timed(lambda i: hn.search(q_v[i : i + 1], 50), min(n_time_queries, len(q_v)))

    # the shipped search: two-stage search vectors (see midivae.model.search_head), ranked and
    # timed as `midivae evaluate` does (its numpy scan of the coarse part, re-rank of the shortlist)
    lay = search_layout(encoder)
    if lay.coarse_dims:
        from midivae.evaluate.metrics import pairwise, prepare, take
        from midivae.evaluate.tasks import ExactScan, two_stage_top_k

        spec = ("cosine", lay.coarse_dims, lay.shortlist, lay.signature_dims, lay.fp_weight)
        idx_s = prepare(encode_search(encoder, idx_p, tempo=tempo[idx_owner]), *spec)
        q_s = prepare(encode_search(encoder, q_p, tempo=tempo[q_owner]), *spec)
        two_d = np.concatenate([pairwise(take(q_s, np.arange(a, min(a + 512, len(q_p)))), idx_s)
                                for a in range(0, len(q_p), 512)])
        out["two_stage_hit1"] = song_hits(two_d, idx_owner, len(songs), q_owner, rng)
        n = min(n_time_queries, len(q_p))
        coarse = ExactScan.of(idx_s.coarse.vectors, idx_s.coarse.sq_norms, "cosine", column_major=True)
        fp = (lambda i: (idx_s.signatures, q_s.signatures[i], lay.fp_weight)) if lay.signature_dims else (lambda i: None)
        out["two_stage_ms"] = timed(lambda i: two_stage_top_k(coarse, idx_s.vectors, idx_s.sq_norms, "cosine",
                                                              lay.shortlist, q_s.coarse.vectors[i], q_s.vectors[i], 50,
                                                              fp(i)), n)
        out["two_stage_bytes"] = 4 * (lay.coarse_dims + lay.width) * len(idx_p)
        out["two_stage_note"] = (f"{lay.width} dims, scan {lay.coarse_dims}, re-rank {lay.shortlist}"
                                 + (f" with {lay.signature_dims} fingerprint hashes" if lay.signature_dims else "")
                                 + f"; {n} queries")

    # raw: sparse cosine over 80,640 cells
    raw_idx = raw_matrix(idx_p)
    raw_q = raw_matrix(q_p)
    raw_d = np.empty((len(q_p), len(idx_p)), dtype=np.float32)
    for a in range(0, len(q_p), 512):
        raw_d[a : a + 512] = 1.0 - (raw_q[a : a + 512] @ raw_idx.T).toarray()
    out["raw_hit1"] = song_hits(raw_d, idx_owner, len(songs), q_owner, rng)

    def raw_query(i: int) -> None:
        q = raw_q[i].toarray().ravel()  # sparse matrix x dense vector: cost = stored cells
        d = 1.0 - raw_idx @ q
        np.argpartition(d, 50)[:50]

    out["raw_ms"] = timed(raw_query, min(n_time_queries, len(q_p)))

    # raw as the original work compared it: dense 80,640-value vectors, one matrix-vector product
    dense = np.empty((len(idx_p), PHRASE_CELLS), dtype=np.float32)
    for a in range(0, len(idx_p), 512):
        dense[a : a + 512] = raw_idx[a : a + 512].toarray()

    def dense_query(i: int) -> None:
        d = 1.0 - dense @ raw_q[i].toarray().ravel()
        np.argpartition(d, 50)[:50]

    out["dense_ms"] = timed(dense_query, min(20, len(q_p)))
    del dense
    out["raw_bytes"] = raw_idx.data.nbytes + raw_idx.indices.nbytes + raw_idx.indptr.nbytes
    out["lat_bytes"] = idx_v.nbytes

    # whole second half as one query: song rules mean vs nearest
    for name, d in (("latent", lat_d), ("raw", raw_d)):
        order = np.argsort(idx_owner, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(idx_owner[order])) + 1]
        per = np.minimum.reduceat(d[:, order], starts, axis=1)  # (queries, songs)
        for rule in ("mean", "nearest"):
            hits = []
            for s in range(len(songs)):
                rows = per[q_owner == s]
                if not len(rows):
                    continue
                score = rows.mean(0) if rule == "mean" else rows.min(0)
                tied = np.isclose(score, score.min(), atol=1e-6)
                hits.append(tied[s] / tied.sum())
            out[f"{name}_{rule}_song_hit1"] = float(np.mean(hits))
    return out


def e2e(songs_dir: list[Path], midi: Path, encoder, checkpoint: str, repeats: int, index_dir: Path) -> None:
    from midivae.index import build_index
    from midivae.index.sources import read_phrases

    layout = search_layout(encoder)
    stale = True
    if (index_dir / "MANIFEST.json").exists():
        with LatentIndex.open(index_dir) as ix:
            stale = (ix.checkpoint_id, ix.search_id) != (encoder.checkpoint_id, layout.search_id) or not ix.keeps_notes
    t = time.perf_counter()
    if stale:
        build_index(songs_dir, index_dir, encoder, checkpoint=checkpoint, overwrite=True)
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    with LatentIndex.open(index_dir) as ix:
        ix.check_encoder(encoder.checkpoint_id, layout.search_id)
        ix.table()
        search(ix, str(midi), lambda: encoder)  # warm
        # with and without the exact verify (midivae.verify), a third of the runs each in turn
        total, plain = np.array([]), np.array([])
        for _ in range(3):
            total = np.r_[total, timed(lambda i: search(ix, str(midi), lambda: encoder, k=10), repeats // 3)]
            plain = np.r_[plain, timed(lambda i: search(ix, str(midi), lambda: encoder, k=10, verify=None), repeats // 3)]
        verified = search(ix, str(midi), lambda: encoder, k=10).verified
        read = timed(lambda i: read_phrases(midi), repeats)
        phrases = read_phrases(midi)
        enc = timed(lambda i: encode_search(encoder, phrases.phrases), repeats)
        any_key = timed(lambda i: search(ix, str(midi), lambda: encoder, k=10, any_key=True), max(3, repeats // 4))
        size = f"{len(ix.phrases):,} phrases, {len(ix.songs):,} songs"
    row(f"end-to-end search by a MIDI file (read+cut+encode+rank), encoder {encoder.checkpoint_id}", size, *pct(total),
        f"{midi.name}: {len(phrases)} phrases; read+cut p50 {np.median(read):.1f} ms, "
        f"encode p50 {np.median(enc):.1f} ms; index built in {build_s:.0f} s" if build_s > 1 else
        f"{midi.name}: {len(phrases)} phrases; read+cut p50 {np.median(read):.1f} ms, encode p50 {np.median(enc):.1f} ms")
    row(f"same, --no-verify (the exact verify {'skipped' if verified else 'not run either: the index keeps no notes'})",
        size, *pct(plain), f"verify cost p50 {np.median(total) - np.median(plain):+.1f} ms")
    row(f"end-to-end search, --any-key (12 transpositions), encoder {encoder.checkpoint_id}", size, *pct(any_key), "")


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("MIDIVAE_DATA", here.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (default: shipped; falls back to "
                    f"{BAR_PROFILE} if no model loads)")
    ap.add_argument("--dim", type=int, default=None, help="dimension of the random vectors (default: encoder's)")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="10k and 100k only, 300 songs")
    ap.add_argument("--songs", type=int, default=800, help="songs in the excerpt task")
    ap.add_argument("--store", type=Path, default=Path("/tmp/lpdstore"), help="phrase store of the LPD songs")
    ap.add_argument("--midi", type=Path, default=data / "midi" / "multitrack_pop" / "10647.mid",
                    help="the ~3-minute MIDI query (10647.mid is 180 s)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/midivae-bench"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=64)
    ap.add_argument("--vectors", default="real-like,gaussian",
                    help="synthetic vectors for the scale rows: real-like (real embeddings + noise), gaussian")
    ap.add_argument("--e2e-also", action="append", default=[], metavar="CKPT",
                    help="also time end-to-end search with this checkpoint (repeatable)")
    ap.add_argument("--build-threads", type=int, default=1, help="FAISS threads while building HNSW graphs")
    ap.add_argument("--only", default="scale,e2e,raw")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.songs = "10000,100000", 300
    only = set(args.only.split(","))

    print(f"CPU: {cpu_flags()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    try:
        encoder = resolve_encoder(args.checkpoint)
        checkpoint = args.checkpoint or ""
        enc_note = f"model {encoder.checkpoint_id} ({args.checkpoint or 'shipped'})"
    except MidiVaeError as exc:
        print(f"no model: {exc}; using {BAR_PROFILE}")
        checkpoint = f"{BAR_PROFILE}:{args.dim or 64}"
        encoder = resolve_encoder(checkpoint)
        enc_note = f"built-in {encoder.checkpoint_id} (no trained model loaded)"
    print(f"encoder: {enc_note}, latent_dim={encoder.latent_dim}")
    dim = args.dim or encoder.latent_dim
    args.cache.mkdir(parents=True, exist_ok=True)

    if "scale" in only:
        kinds = args.vectors.split(",")
        real = real_vectors(args.store, encoder, args.cache) if "real-like" in kinds else None
        scale([int(s) for s in args.sizes.split(",")], kinds, dim, real, args.cache, args.queries, args.hnsw_m,
              args.ef_construction, args.build_threads)
    if "e2e" in only:
        src = [args.store] if args.store.is_dir() else [data / "lpd5" / "lpd_5_cleansed"]
        extra = [(resolve_encoder(c), c) for c in args.e2e_also]
        for enc, ckpt in [(encoder, checkpoint), *extra]:
            tag = enc.checkpoint_id.replace("/", "_").replace(":", "_")
            e2e(src, args.midi, enc, ckpt, 30, args.cache / f"e2e-index-{tag}")
    if "raw" in only:
        songs = load_songs(args.store, data / "lpd5" / "lpd_5_cleansed", args.songs)
        r = excerpt(songs, encoder, args.queries)
        size = f"{r['n_songs']} songs, {r['n_indexed']:,} indexed / {r['n_queries']:,} query phrases"
        speed = np.median(r["raw_ms"]) / np.median(r["latent_ms"])
        row("excerpt task, raw pianoroll cosine (sparse brute force)", size, *pct(r["raw_ms"]),
            f"Hit@1 {r['raw_hit1']:.3f}; {r['raw_bytes'] / r['n_indexed']:,.0f} B/phrase as CSR "
            f"({PHRASE_CELLS:,} B dense bool, {PHRASE_CELLS // 8:,} B bit-packed)")
        dense_speed = np.median(r["dense_ms"]) / np.median(r["latent_ms"])
        row("excerpt task, raw pianoroll cosine (dense float32 brute force)", size, *pct(r["dense_ms"]),
            f"same scores as the sparse row (Hit@1 {r['raw_hit1']:.3f}); {PHRASE_CELLS * 4:,} B/phrase")
        row("excerpt task, latent exact cosine (posterior means)", size, *pct(r["latent_ms"]),
            f"Hit@1 {r['latent_hit1']:.3f}; {r['lat_bytes'] / r['n_indexed']:,.0f} B/phrase; "
            f"{dense_speed:,.0f}x faster per query than dense raw, {speed:,.0f}x than sparse raw; "
            f"encode {r['encode_per_s']:,.0f} phrases/s")
        if "two_stage_ms" in r:
            row("excerpt task, two-stage search vectors (the shipped search)", size, *pct(r["two_stage_ms"]),
                f"Hit@1 {r['two_stage_hit1']:.3f}; {r['two_stage_bytes'] / r['n_indexed']:,.0f} B/phrase "
                f"({r['two_stage_note']}); {np.median(r['dense_ms']) / np.median(r['two_stage_ms']):,.0f}x faster "
                f"than dense raw, {np.median(r['raw_ms']) / np.median(r['two_stage_ms']):,.0f}x than sparse raw")
        row("excerpt task, latent HNSW cosine (efSearch=64)", size, *pct(r["hnsw_ms"]),
            f"Hit@1 {r['hnsw_hit1']:.3f} (top-1 phrase's song); "
            f"{np.median(r['dense_ms']) / np.median(r['hnsw_ms']):,.0f}x faster than dense raw, "
            f"{np.median(r['raw_ms']) / np.median(r['hnsw_ms']):,.0f}x than sparse raw")
        for name in ("latent", "raw"):
            row(f"whole-half query, song rule mean vs nearest ({name})", size, "", "",
                f"song Hit@1 mean {r[f'{name}_mean_song_hit1']:.3f}, nearest {r[f'{name}_nearest_song_hit1']:.3f}")

    print()
    print(f"Command: python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("| measurement | size | p50 ms | p99 ms | notes |")
    print("|---|---|---|---|---|")
    for r_ in ROWS:
        print("| " + " | ".join(r_) + " |")


if __name__ == "__main__":
    main()
