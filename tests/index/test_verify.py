"""The exact verify: notes read from phrases, their scores against a brute-force reference, the
re-order's rules, and the index that keeps notes and searches with them."""

from __future__ import annotations

import importlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from midivae.constants import DRUMS, GUITAR, PHRASE_SHAPE, PIANO, STEPS_PER_PHRASE
from midivae.index import LatentIndex, build_index, search
from midivae.index.search import (
    _NearestPhrases,
    _verify_candidates,
    encode_query,
    query_from_file,
    rank_songs,
    resolve_query,
)
from midivae.index.sources import read_phrases
from midivae.song import Phrases
from midivae.verify import (
    STEP,
    PhraseNotes,
    VerifyConfig,
    near_ties,
    nearest,
    note_scores,
    note_scores_one,
    query_codes,
    reorder,
    verify_in_place,
)

CONFIG = VerifyConfig()


def phrase(*notes: tuple[int, int, int, int, int]) -> np.ndarray:
    """A phrase from (track, pitch index, first step, steps) notes."""
    p = np.zeros((STEPS_PER_PHRASE, *PHRASE_SHAPE[2:]), dtype=bool)
    for track, pitch, start, length in notes:
        p[start : start + length, pitch, track] = True
    return p.reshape(PHRASE_SHAPE)


def as_set(notes: PhraseNotes, i: int) -> set[tuple[int, int, int]]:
    a, b = notes.starts[i], notes.starts[i + 1]
    return set(zip(notes.onsets[a:b].tolist(), notes.columns[a:b].tolist(), notes.lengths[a:b].tolist()))


def brute_score(q: set, c: set, config: VerifyConfig = CONFIG) -> float:
    """The Tversky score by its definition: every offset, every note."""
    best = 0.0
    for off in range(-config.max_offset, config.max_offset + 1):
        shifted = {(t + off, col, n) for t, col, n in c if 0 <= t + off < STEPS_PER_PHRASE}
        overlap = len(q & shifted)
        best = max(best, overlap / (len(q) + config.beta * (len(shifted) - overlap) + 1e-9))
    return best


def random_phrases(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        notes = [(int(rng.integers(0, 5)), int(rng.integers(20, 30)), int(rng.integers(0, 190)), int(rng.integers(1, 8)))
                 for _ in range(rng.integers(0, 25))]
        out.append(phrase(*[(t, p, s, min(n_, STEPS_PER_PHRASE - s)) for t, p, s, n_ in notes]))
    return np.stack(out)


def test_notes_of_a_phrase_merge_the_pitched_tracks():
    p = phrase((DRUMS, 10, 0, 1), (PIANO, 40, 4, 6), (GUITAR, 40, 8, 4), (PIANO, 50, 190, 2), (DRUMS, 10, 2, 1))
    notes = PhraseNotes.from_phrases(p[None])
    # the guitar note overlapping the piano one merges with it into one note of steps 4..11
    assert as_set(notes, 0) == {(0, 10, 1), (2, 10, 1), (4, 84 + 40, 8), (190, 84 + 50, 2)}
    assert notes.counts.tolist() == [4]


def test_notes_round_trip_through_blobs_and_take():
    phrases = random_phrases(20, seed=1)
    notes = PhraseNotes.from_phrases(phrases, batch=7)  # batches join up
    assert len(notes) == 20
    back = PhraseNotes.from_blobs(notes.to_blobs())
    for i in range(20):
        assert as_set(back, i) == as_set(notes, i) == as_set(PhraseNotes.from_phrases(phrases[i : i + 1]), 0)
    taken = notes.take(np.array([5, 2, 5]))
    assert [as_set(taken, i) for i in range(3)] == [as_set(notes, 5), as_set(notes, 2), as_set(notes, 5)]
    assert len(PhraseNotes.from_phrases(np.zeros((0, *PHRASE_SHAPE), bool))) == 0


def test_scores_equal_the_definition():
    phrases = random_phrases(30, seed=2)
    # near-copies: shifted by a few steps, a note dropped, a note added
    phrases[1] = np.roll(phrases[0].reshape(STEPS_PER_PHRASE, -1), 5, axis=0).reshape(PHRASE_SHAPE)
    phrases[2] = phrases[0]
    phrases[2].reshape(STEPS_PER_PHRASE, -1)[:, :200] = False
    notes = PhraseNotes.from_phrases(phrases)
    rng = np.random.default_rng(0)
    qs, cs = rng.integers(0, 30, 200), rng.integers(0, 30, 200)
    qs[:3], cs[:3] = 0, [0, 1, 2]
    got = note_scores(notes, qs, notes, cs)
    want = [brute_score(as_set(notes, q), as_set(notes, c)) for q, c in zip(qs, cs)]
    np.testing.assert_allclose(got, want, atol=1e-9)
    one = note_scores_one(query_codes(notes, 0), notes, np.arange(30))
    np.testing.assert_allclose(one, [brute_score(as_set(notes, 0), as_set(notes, c)) for c in range(30)], atol=1e-9)
    if as_set(notes, 0):
        assert got[0] == pytest.approx(1.0)  # a phrase holds all its own notes


def test_a_drop_keeps_the_original_on_top_of_a_denser_repeat():
    """The original of a query with notes dropped holds all the query's notes; a repeat holding
    them too and more scores below it (its extra notes weigh beta each), not above."""
    original = phrase((PIANO, 40, 0, 6), (PIANO, 44, 12, 6), (PIANO, 47, 24, 6), (DRUMS, 10, 0, 1))
    denser = original.copy().reshape(STEPS_PER_PHRASE, -1)
    denser[48:54, 40 * 5 + PIANO] = True
    dropped = phrase((PIANO, 40, 0, 6), (PIANO, 47, 24, 6))
    notes = PhraseNotes.from_phrases(np.stack([original, denser.reshape(PHRASE_SHAPE), dropped]))
    s = note_scores(notes, np.array([2, 2]), notes, np.array([0, 1]))
    assert s.tolist() == pytest.approx([2 / (2 + CONFIG.beta * 2), 2 / (2 + CONFIG.beta * 3)])


def test_reorder_rules():
    d = np.array([[0.10, 0.11, 0.12, 0.20],  # three near-tied
                  [0.10, 0.50, 0.60, 0.70],  # no near tie: untouched
                  [0.10, 0.10, 0.12, 0.30]])  # an exact tie whose notes agree stays a tie
    near = near_ties(d, 0.03)
    assert near.tolist() == [[True, True, True, False], [False] * 4, [True, True, True, False]]
    assert not near_ties(np.full((1, 3), np.inf), 0.03).any()  # columns set aside are never near
    scores = np.array([[0.2, 0.9, 0.5, -np.inf], [0, 0, 0, 0], [0.7, 0.7, 0.2, -np.inf]])
    out = reorder(d, near, scores)
    assert out[0].tolist() == pytest.approx([0.12, 0.10, 0.11, 0.20])  # order by score: 1, 2, 0
    assert out[1].tolist() == d[1].tolist()
    assert out[2, 0] == out[2, 1] == 0.10 and out[2, 2] == pytest.approx(0.12) and out[2, 3] == 0.30
    # the notes break a tie of distances: STEP apart
    tied = reorder(np.array([[0.1, 0.1]]), np.array([[True, True]]), np.array([[0.1, 0.9]]))
    assert tied[0, 0] == pytest.approx(0.1 + STEP) and tied[0, 1] == 0.1


def test_verify_in_place_finds_the_original_among_near_copies():
    phrases = random_phrases(12, seed=3)
    base = phrases[0].reshape(STEPS_PER_PHRASE, -1)
    longer = base.copy()
    longer[1:] |= base[:-1]  # every note held one step longer
    phrases[1] = longer.reshape(PHRASE_SHAPE)
    notes = PhraseNotes.from_phrases(phrases)
    d = np.linspace(0.2, 0.9, 12)[None].repeat(2, axis=0)
    d[0, :2] = [0.105, 0.100]  # the near-copy reads nearer by the vectors
    d[1, :2] = [0.105, 0.300]  # no near tie: left as is
    before = d.copy()
    assert verify_in_place(d, notes.take([0, 0]), notes, CONFIG) == 1
    cols, _ = nearest(d, 2)
    assert cols[0, 0] == 0 and np.array_equal(d[1], before[1])
    assert sorted(d[0].tolist()) == pytest.approx(sorted(before[0].tolist()))  # the same distances handed out


def test_notes_that_confirm_no_candidate_leave_the_order():
    """A query transposed away from every candidate (its pitched notes match none) keeps the
    search's order: below min_score the notes say nothing."""
    phrases = random_phrases(6, seed=4)
    phrases[:, ..., DRUMS] = False
    moved = np.roll(phrases[0], 7, axis=2)  # up 7 pitch indices (shifted out of every phrase's range)
    notes = PhraseNotes.from_phrases(np.concatenate([phrases, moved[None]]))
    d = np.array([[0.100, 0.101, 0.102, 0.5, 0.6, 0.7]])
    before = d.copy()
    assert note_scores(notes, np.zeros(3, np.int64) + 6, notes, np.arange(3)).max() < CONFIG.min_score
    assert verify_in_place(d, notes.take([6]), notes.take(np.arange(6)), CONFIG) == 0
    assert np.array_equal(d, before)


def test_the_single_query_verify_orders_as_the_matrix_one():
    """The cost task times one query's verify in its lean form (``reorder_one``, through
    ``verified_order``): it must order the candidates as the whole-matrix verify does."""
    from midivae.evaluate.tasks.timing import NoteCheck, verified_order

    phrases = random_phrases(40, seed=5)
    phrases[20:] = phrases[:20]  # copies, and below near-copies: ties in the notes too
    phrases[30:].reshape(10, STEPS_PER_PHRASE, -1)[:, :, :210] = False
    notes = PhraseNotes.from_phrases(phrases)
    rng = np.random.default_rng(1)
    moved = 0
    for q in range(20):
        d = rng.uniform(0.1, 0.16, (1, 40))
        d[0, q + 20] = d[0].min() + 0.005  # its copy (or near-copy) within the margin
        ranked = np.argsort(d[0], kind="stable")
        lean = verified_order(ranked, d[0, ranked], NoteCheck(query_codes(notes, q), notes, CONFIG))
        verify_in_place(d, notes.take([q]), notes, CONFIG)
        assert lean[: CONFIG.candidates].tolist() == np.argsort(d[0], kind="stable")[: CONFIG.candidates].tolist()
        moved += lean[0] != ranked[0]
    assert moved >= 5


# ---- the index ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def index(song_dir, encoder, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ixv") / "index"
    build_index([song_dir], path, encoder, checkpoint="builtin:bar-profile:32")
    return path


def test_index_keeps_every_phrase_notes(index, song_dir):
    with LatentIndex.open(index) as ix:
        assert ix.keeps_notes
        song = sorted(song_dir.glob("*.npz"))[3]
        vids, _ = ix.catalogue.song_phrases(ix.song(song.stem).song_key)
        stored = ix.phrase_notes(vids)
        read = PhraseNotes.from_phrases(read_phrases(song).phrases)
        assert [as_set(stored, i) for i in range(len(vids))] == [as_set(read, i) for i in range(len(vids))]


def reference_verified(ix: LatentIndex, q, rule: str) -> list[float]:
    """Song distances by brute force: every stored phrase, the verify run on the whole matrix."""
    keys = ix.table().song_keys
    d, vids = _all_distances(ix, q)
    d = d.astype(np.float64)
    verify_in_place(d, q.notes, ix.phrase_notes(vids), CONFIG)
    starts = np.r_[0, np.flatnonzero(np.diff(keys)) + 1]
    per_song = np.minimum.reduceat(d, starts, axis=1)
    return sorted((per_song.mean(0) if rule == "mean" else per_song.min(0)).tolist())


def shifted_query(path: Path, encoder, steps: int):
    """A song's first 8 bars with every phrase delayed by ``steps`` (an altered copy, as the
    robustness task queries with)."""
    p = read_phrases(path, (0, 32))
    moved = np.roll(p.phrases.reshape(len(p), STEPS_PER_PHRASE, -1), steps, axis=1)
    moved[:, :steps] = False
    return encode_query(encoder, Phrases(moved.reshape(p.phrases.shape), p.bar_offsets, p.tempo), path.stem, "file",
                        any_key=False)


@pytest.mark.parametrize("rule", ["mean", "nearest"])
def test_verified_ranking_equals_brute_force(rule, index, song_dir, encoder):
    with LatentIndex.open(index) as ix:
        moved = 0
        for path in sorted(song_dir.glob("*.npz"))[:8]:
            for q in (query_from_file(path, encoder, (0, 32), any_key=False), shifted_query(path, encoder, 6)):
                hits = rank_songs(ix, q, k=10, rule=rule, candidates=len(ix.phrases))
                assert [h.distance for h in hits] == pytest.approx(reference_verified(ix, q, rule)[:10], abs=1e-5)
                best = _NearestPhrases(len(q.notes), CONFIG.candidates)
                best.add(*_all_distances(ix, q))
                moved += _verify_candidates(ix, q, best, CONFIG) is not None
        assert moved  # the built-in encoder leaves near ties that the notes order otherwise


def _all_distances(ix: LatentIndex, q) -> tuple[np.ndarray, np.ndarray]:
    vids = ix.table().vector_ids
    v = ix.phrases.vectors(vids)
    qv = q.vectors[0] / np.linalg.norm(q.vectors[0], axis=1, keepdims=True)
    return np.maximum(1 - qv @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T, 0).astype(np.float32), vids


def test_an_index_without_notes_searches_without_verify(index, song_dir, encoder, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(index, copy)
    with LatentIndex.open(copy) as ix:
        catalogue = ix.catalogue.path
    with sqlite3.connect(catalogue) as conn:  # as a catalogue from before notes were kept
        conn.execute("DELETE FROM meta WHERE key = 'phrase_notes'")
        conn.execute("DROP TABLE phrase_notes")
    query = str(sorted(song_dir.glob("*.npz"))[2])
    with LatentIndex.open(copy) as ix:
        assert not ix.keeps_notes
        result = search(ix, query, lambda: encoder, k=5)
        assert not result.verified and result.hits
        assert resolve_query(ix, query, lambda: encoder, None, False).notes is None  # no notes read for nothing
    with LatentIndex.open(index) as ix:
        assert search(ix, query, lambda: encoder, k=5).verified
        assert not search(ix, query, lambda: encoder, k=5, verify=None).verified
        assert resolve_query(ix, query, lambda: encoder, None, True).notes is not None
        assert resolve_query(ix, query, lambda: encoder, None, True, with_notes=False).notes is None


def test_a_song_added_without_notes_turns_the_verify_off(index, song_dir, encoder, tmp_path):
    from midivae.index.latent_index import IndexWriter

    copy = tmp_path / "mixed"
    shutil.copytree(index, copy)
    songs = sorted(song_dir.glob("*.npz"))
    extra = read_phrases(songs[0])
    with IndexWriter.open(copy) as writer:  # vectors through the library, no notes
        writer.add_song("added-without-notes", encoder.encode(extra.phrases)[0], extra.bar_offsets)
    with LatentIndex.open(copy) as ix:
        assert not ix.keeps_notes and not ix.info().phrase_notes
        assert not search(ix, str(songs[1]), lambda: encoder, k=3).verified
        n_before = len(ix.phrases)
    with IndexWriter.open(copy) as writer:  # removing a song still drops its notes
        writer.remove_song(songs[2].stem)
    with LatentIndex.open(copy) as ix:
        with sqlite3.connect(ix.catalogue.path) as conn:
            kept = conn.execute("SELECT COUNT(*) FROM phrase_notes").fetchone()[0]
        # every phrase but the removed song's and the one added without notes keeps its notes
        assert kept == len(ix.phrases) - len(extra) < n_before


@pytest.mark.parametrize("rule", ["mean", "nearest"])
def test_the_early_stop_keeps_the_verified_ranking(rule, index, song_dir, encoder, monkeypatch):
    """Candidate songs scored a few at a time (the early stop on their lower bounds) give the
    ranking that scoring every candidate gives, although the verify moves song scores."""
    search_module = importlib.import_module("midivae.index.search")  # the package's `search` is the function
    with LatentIndex.open(index) as ix:
        for path in sorted(song_dir.glob("*.npz"))[:12]:
            for q in (query_from_file(path, encoder, (0, 32), any_key=False), shifted_query(path, encoder, 6)):
                for k in (1, 3):
                    monkeypatch.setattr(search_module, "SCORE_CHUNK", 10**6)
                    every = [(h.song_id, round(h.distance, 6)) for h in rank_songs(ix, q, k=k, rule=rule)]
                    monkeypatch.setattr(search_module, "SCORE_CHUNK", 0)  # 4 k songs at a time
                    assert [(h.song_id, round(h.distance, 6)) for h in rank_songs(ix, q, k=k, rule=rule)] == every
