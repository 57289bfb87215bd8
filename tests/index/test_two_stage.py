"""A two-stage index (an encoder with a search head): the phrase index holds the coarse part, songs
are scored on the whole search vectors, and edits keep both in step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from midivae.constants import BARS_PER_PHRASE
from midivae.data.fingerprint import signatures
from midivae.errors import IndexMismatchError
from midivae.index import BarProfileEncoder, LatentIndex, add_to_index, build_index, remove_from_index
from midivae.index.latent_index import WHOLE
from midivae.index.search import query_from_file, query_from_song, rank_songs, search
from midivae.model.search_head import SearchHead


class TwoStageEncoder:
    """The built-in encoder with a search head: per-bar parts are the bar-profile means of each bar."""

    def __init__(self, search_id: str = "head-a", coarse_dims: int = 4, shortlist: int = 6, fingerprints: int = 0) -> None:
        self.base = BarProfileEncoder(16, seed=0)
        self.latent_dim = 16
        self.checkpoint_id = self.base.checkpoint_id
        self.search_id = search_id
        basis = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))[0].astype(np.float32)
        self.search_head = SearchHead(basis, bar_weight=0.3, coarse_dims=coarse_dims, shortlist=shortlist,
                                      fingerprint_hashes=fingerprints)
        self.search_dim = 16 + BARS_PER_PHRASE * 16 + fingerprints

    def encode(self, phrases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.base.encode(phrases)

    def encode_search(self, phrases: np.ndarray) -> np.ndarray:
        bars = []
        for b in range(BARS_PER_PHRASE):
            one = np.zeros_like(phrases)
            one[:, b] = phrases[:, b]
            bars.append(self.base.encode(one)[0])
        bars = np.stack(bars, axis=1)
        v = self.search_head.vectors(bars.mean(axis=1), bars)
        if self.search_head.fingerprint_hashes:
            v = np.concatenate([v, signatures(phrases, self.search_head.fingerprint_hashes).astype(np.float32)], axis=1)
        return v


@pytest.fixture(scope="module")
def two_stage(song_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "index"
    build_index([song_dir], path, TwoStageEncoder())
    return path


def test_layout_on_disk(two_stage):
    with LatentIndex.open(two_stage) as ix:
        info = ix.info()
        assert (info.coarse_dims, info.shortlist, info.search_id, info.latent_dim, info.vector_dims) == (4, 6, "head-a", 16, 80)
        assert info.song_dims == 16
        assert (ix.generation / WHOLE).is_dir() and ix.phrases.dim == 4 and ix.whole.dim == 80 and ix.songs.dim == 16
        vids = ix.table().vector_ids
        np.testing.assert_allclose(ix.phrases.vectors(vids), ix.search_vectors(vids)[:, :4] /
                                   np.linalg.norm(ix.search_vectors(vids)[:, :4], axis=1, keepdims=True), atol=1e-5)


def test_songs_are_scored_on_the_whole_vectors(two_stage, song_dir):
    enc = TwoStageEncoder()
    query = sorted(song_dir.glob("*.npz"))[5]
    with LatentIndex.open(two_stage) as ix:
        q = query_from_file(query, enc, None, any_key=False)
        assert q.vectors.shape[-1] == 80
        hits = rank_songs(ix, q, k=8, candidates=len(ix.phrases))
        unit = q.vectors[0] / np.linalg.norm(q.vectors[0], axis=1, keepdims=True)
        ref = []
        for song_id in ix.catalogue.song_ids():
            v = ix.search_vectors(ix.catalogue.song_phrases(ix.song(song_id).song_key)[0])
            v = v / np.linalg.norm(v, axis=1, keepdims=True)
            ref.append((float(np.maximum(1 - unit @ v.T, 0).min(axis=1).mean()), song_id))
        assert [h.distance for h in hits] == pytest.approx([d for d, _ in sorted(ref)[:8]], abs=1e-5)
        top = search(ix, str(query), lambda: enc, k=3).hits[0]
        assert top.song_id == query.stem and top.distance == pytest.approx(0, abs=1e-5)


def test_edits_keep_both_parts_in_step(two_stage, song_dir, tmp_path):
    enc = TwoStageEncoder()
    names = sorted(p.stem for p in song_dir.glob("*.npz"))
    part = tmp_path / "part"
    part.mkdir()
    for n in names[:10]:
        shutil.copy(song_dir / f"{n}.npz", part / f"{n}.npz")
    inc = tmp_path / "inc"
    build_index([part], inc, enc)
    add_to_index(inc, [song_dir], enc)
    remove_from_index(inc, names[2:6])
    add_to_index(inc, [song_dir], enc)
    for q in names[::6]:
        with LatentIndex.open(inc) as a, LatentIndex.open(two_stage) as b:
            assert len(a.whole) == len(a.phrases) == len(b.phrases)
            ha = rank_songs(a, query_from_song(a, q, None, None, False), k=5)
            hb = rank_songs(b, query_from_song(b, q, None, None, False), k=5)
            assert [h.song_id for h in ha] == [h.song_id for h in hb]
            np.testing.assert_allclose([h.distance for h in ha], [h.distance for h in hb], atol=1e-4)


def test_another_search_head_is_refused(two_stage, song_dir):
    other = TwoStageEncoder(search_id="head-b")
    with pytest.raises(IndexMismatchError, match="search head"):
        add_to_index(two_stage, [song_dir], other)
    with LatentIndex.open(two_stage) as ix, pytest.raises(IndexMismatchError):
        search(ix, str(sorted(song_dir.glob("*.npz"))[0]), lambda: other, k=3)


def test_fingerprints_rerank_the_shortlist_and_survive_storage(song_dir, tmp_path):
    from midivae.data.fingerprint import similarity

    enc = TwoStageEncoder(search_id="head-fp", fingerprints=32)
    path = tmp_path / "fp"
    build_index([song_dir], path, enc)
    query = sorted(song_dir.glob("*.npz"))[7]
    with LatentIndex.open(path) as ix:
        assert (ix.signature_dims, ix.fp_weight) == (32, 0.2) and ix.phrases.dim == 4 and ix.whole.dim == 80 + 32
        vids = ix.table().vector_ids
        stored = ix.search_vectors(vids)
        np.testing.assert_array_equal(stored[:, -32:], np.round(stored[:, -32:]))  # exact integers kept
        q = query_from_file(query, enc, None, any_key=False)
        hits = rank_songs(ix, q, k=5, candidates=len(ix.phrases))
        assert hits[0].song_id == query.stem and hits[0].distance == pytest.approx(0, abs=1e-5)
        # reference: whole-vector cosine; the 6 nearest by the coarse part get + 0.2 (1 - similarity),
        # every other phrase + 0.2; a song's score is the mean over query phrases of its nearest
        def unit(v):
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        coords, sig = q.vectors[0][:, :-32], q.vectors[0][:, -32:].astype(np.int32)
        d = np.maximum(1 - unit(coords) @ unit(stored[:, :-32]).T, 0) + 0.2
        rough = 1 - unit(coords[:, :4]) @ unit(stored[:, :4]).T
        for r in range(d.shape[0]):
            short = np.argsort(rough[r], kind="stable")[:6]
            d[r, short] -= 0.2 * similarity(sig[r], stored[short, -32:].astype(np.int32))
        owner = ix.song_keys_of(vids)
        ref = sorted(float(d[:, owner == key].min(axis=1).mean()) for key in np.unique(owner))
        assert [h.distance for h in hits] == pytest.approx(ref[:5], abs=1e-5)
