"""Experiment: the search head's song projection (weight grid), on the validation split.

Fits the projection (midivae.model.song_projection) on the phrases of the train split's songs
from number 800 on, then scores validation queries: excerpt retrieval among the validation songs
alone and *at scale* (validation queries; the index also holds the first halves of the train
split's first 800 songs, which the projection never saw: a collection five times larger, where
the shipped search fell under the MRR target), phrase Hit@1 per alteration, the worst song Hit@1
(any-key for transpositions) and version identification (generated ``hard`` versions).

    python scripts/experiments/song_projection.py --store /tmp/lpdstore 0 0.5 1 2

Weight 0: the search head without a projection (its rotation fitted on the same phrases);
`shipped`: the checkpoint's head as it is (fitted on the whole train split, so its "at scale"
figure is flattered: the projection has seen the distractor songs). Figures: docs/model_selection.md ("Song projection").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import midivae
from midivae.data.augment import AugmentConfig, random_view
from midivae.data.style import phrase_style
from midivae.evaluate import tasks as T
from midivae.evaluate.baselines import CachedEncoder, model_embedding
from midivae.evaluate.data import flatten, load_store_split, pick
from midivae.evaluate.metrics import group_min, pairwise, rank_of_target, take, tie_tolerance
from midivae.evaluate.versions import VERSION_PRESETS, generated_versions, load_versions
from midivae.model.search_head import SongFit, fit_search_head

NAMES = ("drop_20pct_notes", "shift_eighth", "piano_to_guitar", "transpose_up_2", "transpose_down_3")
FIT_FROM = 800  # train songs [FIT_FROM:] fit the projection; [:FIT_FROM] are the distractors
#: the training views: all the VAE's augmentations, or all but transposition (a key is a song's style)
VIEWS = {"keep-key": AugmentConfig(p_transpose=0.0), "all": AugmentConfig()}


def excerpt_among(queries_songs, distractors, emb) -> tuple[float, float]:
    """Excerpt Hit@1 / MRR of the query songs' second halves, among all songs' first halves."""
    songs = list(queries_songs) + list(distractors)
    flat = flatten(songs)
    index_rows, query_rows = T.excerpt_split(flat, len(songs))
    query_rows = query_rows[flat.song[query_rows] < len(queries_songs)]
    v = T.embed_flat(emb, flat)
    index, queries = emb.prepare(v[index_rows]), emb.prepare(v[query_rows])
    groups, starts = np.unique(flat.song[index_rows], return_index=True)
    position = np.full(len(songs), -1)
    position[groups] = np.arange(len(groups))
    target = position[flat.song[query_rows]]
    closer, tied = [], []
    for a in range(0, len(query_rows), 512):
        q = take(queries, np.arange(a, min(a + 512, len(query_rows))))
        st = rank_of_target(group_min(pairwise(q, index), starts), target[a : a + 512], tie_tolerance(q, index))
        closer.append(st.closer)
        tied.append(st.tied)
    from midivae.evaluate.metrics import RankStats

    st = RankStats(np.concatenate(closer), np.concatenate(tied))
    return float(np.mean(st.hit(1))), float(np.mean(st.reciprocal_rank()))


def song_fit_of(model, songs, seed: int = 0, altered: str = "none") -> tuple[np.ndarray, SongFit]:
    if altered == "versions":  # a re-rendering of every song joins it: more phrases of the same song numbers
        songs = list(songs) + rerendered(songs, seed)
        mu, fit = song_fit_of(model, songs, seed)
        n = len(songs) // 2
        song = fit.song % n  # the re-rendering of song i is song n + i
        return mu, SongFit(fit.bars, fit.style, song, seed)
    flat = flatten(songs)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(6)]
    for at, batch in zip(range(0, len(flat), 256), flat.batches(None, 256)):
        tempo = flat.tempo[at : at + 256]  # a view of a phrase keeps its song's tempo
        views = [batch, random_view(batch, rng, VIEWS[altered]).numpy()] if altered != "none" else [batch]
        for j, ph in enumerate(views):
            mu, _, b = model.encode_with_bars(ph)
            for i, x in enumerate((mu, b, phrase_style(ph, tempo))):
                parts[3 * j + i].append(x)
    cat = [np.concatenate(p) if p else None for p in parts]
    return cat[0], SongFit(cat[1], cat[2], flat.song.copy(), seed, (cat[3], cat[4], cat[5]) if altered != "none" else None)


def rerendered(songs, seed: int) -> list:
    """A `hard` re-rendering of each song (evaluate.versions.rerender), as songs of phrases."""
    from midivae.evaluate.data import SongPhrases
    from midivae.evaluate.versions import rerender
    from midivae.song import cut_phrases, phrases_to_roll, song_from_roll

    rng = np.random.default_rng([seed, 0xA17])
    out = []
    for s in songs:
        alt = cut_phrases(song_from_roll(rerender(phrases_to_roll(s.phrases), rng, VERSION_PRESETS["hard"])))
        out.append(SongPhrases.from_phrases(s.song_id + "__v", alt.phrases, alt.bar_offsets, s.tempo))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--fit-from", type=int, default=FIT_FROM,
                    help="train songs from this number on fit the projection, the ones before are distractors")
    ap.add_argument("--fit-songs", type=int, default=None,
                    help="fit on only this many of those songs (the distractors stay the same)")
    ap.add_argument("--altered", choices=("none", "keep-key", "all", "versions"), default="none",
                    help="fit on pairs whose second phrase is an altered view half the time (keep-key: no "
                         "transpositions), or with a generated `hard` re-rendering of every song among its phrases")
    ap.add_argument("--real-versions", type=Path, default=None,
                    help="also version identification on this CSV (file,song) of real MIDI versions")
    ap.add_argument("--tempo-dropout", type=float, default=0.0,
                    help="fit with this share of the fitting songs' tempi unknown (a store with tempi)")
    ap.add_argument("--unknown-tempo", action="store_true",
                    help="score with every song's tempo unknown (the fit keeps the store's tempi)")
    ap.add_argument("weights", nargs="+", help="song weights (0: no projection; 'shipped': the checkpoint's head as it is)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = midivae.load_model(args.checkpoint)
    base, enc = model.search_head, CachedEncoder(model)
    val = load_store_split(args.store, "validation", None)
    train = load_store_split(args.store, "train", None)
    fitting = train[args.fit_from :][: args.fit_songs]
    if args.tempo_dropout:
        from dataclasses import replace

        drop = np.random.default_rng(7).random(len(fitting)) < args.tempo_dropout
        fitting = [replace(s, tempo=float("nan")) if d else s for s, d in zip(fitting, drop)]
    print(f"projection fitted on {len(fitting)} train songs, {args.fit_from} distractors", flush=True)
    mu, fit = song_fit_of(model, fitting, altered=args.altered)
    if args.unknown_tempo:
        from dataclasses import replace

        val = [replace(s, tempo=float("nan")) for s in val]
        train = [replace(s, tempo=float("nan")) for s in train]
    queries = T.altered_queries(val, 1000, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="midivae-versions-"))
    versions = generated_versions(pick(val, None, 0), tmp, 100, 0, VERSION_PRESETS["hard"])
    real = load_versions(args.real_versions.parent, args.real_versions) if args.real_versions else None
    print("| song weight | excerpt at scale Hit@1 / MRR | excerpt Hit@1 / MRR | phrase Hit@1 drop20 / shift6 / p->g / +2 / -3"
          " | worst song Hit@1 | versions Hit@1 / MRR |" + (" real versions Hit@1 / MRR |" if real else ""))
    settings = {k: v for k, v in base.settings().items() if k != "song_weight"}
    for w in args.weights:
        if w == "shipped":
            model._search_head = base
        else:
            model._search_head = fit_search_head(mu, fit if float(w) else None, song_weight=float(w), **settings)
        emb = model_embedding(model, "model", "cosine", enc)
        big = excerpt_among(val, train[: args.fit_from], emb)
        e = T.excerpt_retrieval(val, emb)
        r = T.robustness(val, emb, queries=queries)
        v = T.version_identification(versions, emb)
        worst = min(r.get(f"{n}/song_hit1_anykey", r[f"{n}/song_hit1"]) for n in NAMES)
        phrase = " / ".join(f"{r[f'{n}/phrase_hit1']:.3f}" for n in NAMES)
        rv = T.version_identification(real, emb) if real else None
        print(f"| {w} | {big[0]:.3f} / {big[1]:.3f} | {e['hit@1']:.3f} / {e['mrr']:.3f} | {phrase} | {worst:.3f} "
              f"| {v['hit@1']:.3f} / {v['mrr']:.3f} |" + (f" {rv['hit@1']:.3f} / {rv['mrr']:.3f} |" if rv else ""), flush=True)


if __name__ == "__main__":
    main()
