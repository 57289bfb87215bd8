"""The search head: rotation keeps cosines, the bar part is each bar's deviation, round trip on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from midivae.errors import CheckpointError
from midivae.model.retrieval import RetrievalConfig, RetrievalVAE
from midivae.model.search_head import (
    SearchHead,
    fit_search_head,
    identity_head,
    load_search_head,
    save_search_head,
)
from midivae.constants import PHRASE_SHAPE


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_rotation_keeps_cosines_and_puts_variance_first():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((500, 8)) * np.array([5, 1, 1, 1, 1, 1, 1, 0.1]) + 3.0
    head = fit_search_head(mu, bar_weight=0.0, coarse_dims=2, shortlist=10)
    v = head.vectors(mu, None)
    u = _unit(mu)
    assert np.allclose(v @ v.T, u @ u.T, atol=1e-5)
    energy = (v**2).mean(0)
    assert np.all(np.diff(energy) <= 1e-6)  # most telling directions first


def test_bar_part_is_the_scaled_deviation_from_the_mean():
    rng = np.random.default_rng(1)
    bars = rng.standard_normal((3, 4, 6)).astype(np.float32)
    mu = np.concatenate([bars.mean(1), rng.standard_normal((3, 2)).astype(np.float32)], 1)
    head = SearchHead(np.eye(8, dtype=np.float32), bar_weight=0.5, coarse_dims=0, shortlist=0, fingerprint_hashes=0)
    v = head.vectors(mu, bars)
    assert v.shape == (3, 8 + 24)
    dev = (bars - bars.mean(1, keepdims=True)) / np.linalg.norm(bars.mean(1), axis=1)[:, None, None]
    assert np.allclose(v[:, 8:], 0.5 * dev.reshape(3, -1), atol=1e-6)
    # a phrase whose bars are all alike has no bar part
    same = np.repeat(bars[:, :1], 4, axis=1)
    assert np.allclose(head.vectors(mu, same)[:, 8:], 0.0)


def test_round_trip_and_default(tmp_path):
    assert load_search_head(tmp_path, 8).settings() == identity_head(8).settings()
    head = SearchHead(np.linalg.qr(np.random.default_rng(2).standard_normal((8, 8)))[0].astype(np.float32), 0.3, 4, 50)
    save_search_head(head, tmp_path)
    back = load_search_head(tmp_path, 8)
    assert back.settings() == head.settings() and np.array_equal(back.basis, head.basis)
    with pytest.raises(CheckpointError):
        load_search_head(tmp_path, 16)
    (tmp_path / "search.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        load_search_head(tmp_path, 8)


def test_a_head_file_from_before_note_lengths_keeps_its_landmarks(tmp_path):
    import json

    from safetensors.numpy import load_file, save_file

    from midivae.data.fingerprint import signatures

    head = SearchHead(np.eye(8, dtype=np.float32), 0.0, 4, 50, 16)
    assert head.fingerprint_durations  # new heads read note lengths
    path = save_search_head(head, tmp_path)
    settings = {k: v for k, v in head.settings().items() if k != "fingerprint_durations"}
    save_file(load_file(path), path, metadata={"settings": json.dumps(settings)})  # as written before session 14
    old = load_search_head(tmp_path, 8)
    assert not old.fingerprint_durations
    phrases = np.zeros((1, 4, 48, 84, 5), dtype=bool)
    phrases[0, 0, :30, 40, 1] = phrases[0, 0, 3, 44, 1] = phrases[0, 0, 5:9, 30, 3] = True
    got = old.search_vectors(np.ones((1, 8), np.float32), None, phrases)[:, -16:]
    np.testing.assert_array_equal(got, signatures(phrases, 16))
    assert not np.array_equal(got, signatures(phrases, 16, durations=True))


def test_retrieval_bars_average_to_the_content_mean():
    cfg = RetrievalConfig(latent_dim=16, patch_dim=16, bar_dim=32, orch_dim=4)
    model = RetrievalVAE(cfg).eval()
    x = torch.from_numpy(np.random.default_rng(3).random((3, *PHRASE_SHAPE)) < 0.02).float()
    with torch.inference_mode():
        mu, logvar, bars = model.encode_with_bars(x)
        assert torch.allclose(mu, model.encode(x)[0]) and torch.allclose(logvar, model.encode(x)[1])
    assert bars.shape == (3, 4, cfg.content_dim) and model.bar_part_dim == 4 * cfg.content_dim
    assert torch.allclose(bars.mean(1), mu[:, : cfg.content_dim], atol=1e-5)


def test_a_short_latent_gets_a_one_stage_search():
    mu = np.random.default_rng(4).standard_normal((64, 16))
    head = fit_search_head(mu)  # default coarse part, 32 dims, is not shorter than the latent
    assert (head.coarse_dims, head.shortlist) == (0, 0)
    with pytest.raises(ValueError):
        SearchHead(np.eye(16, dtype=np.float32), coarse_dims=16, shortlist=10)
    with pytest.raises(ValueError, match="two-stage"):  # fingerprints re-rank a shortlist
        SearchHead(np.eye(16, dtype=np.float32), coarse_dims=0, shortlist=0, fingerprint_hashes=8)
    assert fit_search_head(mu).fingerprint_hashes == 0


def test_fitting_the_shipped_model_gives_the_full_search(real_phrases, tmp_path):
    import shutil

    from midivae.data.fingerprint import signatures
    from midivae.model.api import load_model, pretrained_path
    from midivae.model.train import fit_search_head_of

    ckpt = tmp_path / "ckpt"
    shutil.copytree(pretrained_path(), ckpt)
    (ckpt / "search.safetensors").unlink()
    assert load_model(ckpt).search_dim == 128  # no head: the posterior means
    rows = np.resize(np.arange(len(real_phrases)), 200)  # a rotation needs at least 128 phrases
    packed = np.packbits(real_phrases[rows].reshape(200, -1), axis=1)
    fit_search_head_of(ckpt, packed)
    model = load_model(ckpt)
    head = model.search_head
    assert (head.bar_weight, head.coarse_dims, head.shortlist, head.fingerprint_hashes) == (0.3, 32, 100, 64)
    assert head.fingerprint_durations
    v = model.encode_search(real_phrases[:5])
    assert v.shape == (5, 128 + 4 * 112 + 64) == (5, model.search_dim)
    np.testing.assert_array_equal(v[:, -64:], signatures(real_phrases[:5], 64, durations=True))
    mu = model.encode_mean(real_phrases[:5])
    unit = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    np.testing.assert_allclose(v[:, :128] @ v[:, :128].T, unit @ unit.T, atol=1e-5)  # the rotation keeps cosines


def test_a_song_projection_adds_its_cosine_and_brings_a_songs_phrases_together(real_phrases, tmp_path):
    import shutil

    from midivae.data.style import phrase_style
    from midivae.model.api import load_model, pretrained_path
    from midivae.model.song_projection import project
    from midivae.model.search_head import SONG_WEIGHT
    from midivae.model.train import fit_search_head_of

    ckpt = tmp_path / "ckpt"
    shutil.copytree(pretrained_path(), ckpt)
    n = len(real_phrases)
    rows = np.resize(np.arange(n), 256)
    song = np.resize(np.arange(n) * 4 // n, 256)  # four made-up "songs" of consecutive phrases
    packed = np.packbits(real_phrases[rows].reshape(len(rows), -1), axis=1)
    fit_search_head_of(ckpt, packed, train_song=song)
    model = load_model(ckpt)
    head = model.search_head
    assert head.song_dims == 64 and head.song_weight == SONG_WEIGHT and head.content_dims == 128 + 64
    # fitted without a single tempo: the head reads the notes' statistics only, and ignores tempi
    assert not head.reads_tempo and head.style_center.shape == (171,)
    np.testing.assert_array_equal(model.encode_search(real_phrases[:2], 96.0), model.encode_search(real_phrases[:2]))
    v = model.encode_search(real_phrases)
    assert v.shape == (n, 192 + 4 * 112 + 64) == (n, model.search_dim)
    mu, _, bars = model.encode_with_bars(real_phrases)
    unit = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    from midivae.model.search_head import bar_order

    s = project(head.song_projection, head.style_center, head.style_scale, unit, bar_order(bars), real_phrases)
    np.testing.assert_allclose(s, project(head.song_projection, head.style_center, head.style_scale, unit,
                                          bar_order(bars), style=phrase_style(real_phrases)))
    # the rotated content's dot product is the mean's cosine plus the weighted song cosine
    np.testing.assert_allclose(v[:, :192] @ v[:, :192].T, unit @ unit.T + SONG_WEIGHT * s @ s.T, atol=1e-4)
    # on its training phrases, a phrase's song part is nearer its own song's than another's
    label = np.arange(n) * 4 // n
    sim = s @ s.T
    same, other = label[:, None] == label[None, :], label[:, None] != label[None, :]
    np.fill_diagonal(same, False)
    assert sim[same].mean() > sim[other].mean() + 0.2
    # a query of several phrases is searched without the song part: its dot product with a stored
    # vector is the mean's cosine alone, and the bar order and fingerprint columns stay as they were
    q = head.without_song(v)
    np.testing.assert_allclose(q[:, :192] @ v[:, :192].T, unit @ unit.T, atol=1e-4)
    np.testing.assert_array_equal(q[:, 192:], v[:, 192:])
    # round trip: a copy of the folder gives the same vectors; a head needs its phrases
    shutil.copytree(ckpt, tmp_path / "copy")
    np.testing.assert_array_equal(load_model(tmp_path / "copy").encode_search(real_phrases[:3]),
                                  model.encode_search(real_phrases[:3]))
    with pytest.raises(ValueError, match="phrases"):
        head.vectors(mu, bars)
    with pytest.raises(ValueError, match="song projection"):
        SearchHead(head.basis, song_projection=head.song_projection, style_center=None, style_scale=None, song_weight=1.0)


def test_a_song_projection_fitted_with_tempi_reads_the_songs_tempo(real_phrases, tmp_path):
    import shutil

    from midivae.data.style import NOTE_STYLE_DIMS, STYLE_DIMS
    from midivae.model.api import load_model, pretrained_path
    from midivae.model.train import fit_search_head_of

    ckpt = tmp_path / "ckpt"
    shutil.copytree(pretrained_path(), ckpt)
    n = len(real_phrases)
    rows = np.resize(np.arange(n), 256)
    song = np.resize(np.arange(n) * 4 // n, 256)
    tempo = np.array([72.0, 96.0, 128.0, 150.0])[song]  # each made-up song has its own tempo
    tempo[:8] = np.nan  # some unknown: the fit must take them
    packed = np.packbits(real_phrases[rows].reshape(len(rows), -1), axis=1)
    fit_search_head_of(ckpt, packed, train_song=song, train_tempo=tempo)
    model = load_model(ckpt)
    head = model.search_head
    assert head.reads_tempo and head.style_center.shape == (STYLE_DIMS,) and np.isfinite(head.style_center).all()
    ph = real_phrases[:4]
    at = {bpm: model.encode_search(ph, bpm) for bpm in (96.0, 192.0, 128.0)}
    np.testing.assert_allclose(at[192.0], at[96.0], atol=1e-5)  # double time: the same code
    assert np.abs(at[128.0][:, :192] - at[96.0][:, :192]).max() > 1e-3  # another tempo moves the content
    np.testing.assert_array_equal(at[128.0][:, 192:], at[96.0][:, 192:])  # not the bar part or fingerprints
    # per-phrase tempi = one call per tempo; unknown (None, NaN) = the fitted mean, no evidence
    mixed = model.encode_search(ph, np.array([96.0, 128.0, 96.0, 128.0]))
    np.testing.assert_allclose(mixed[::2], at[96.0][::2], atol=1e-6)
    np.testing.assert_allclose(mixed[1::2], at[128.0][1::2], atol=1e-6)
    np.testing.assert_array_equal(model.encode_search(ph), model.encode_search(ph, np.nan))
    mu, _, bars = model.encode_with_bars(ph)
    from midivae.model.search_head import bar_order, unit_rows
    from midivae.model.song_projection import features

    x = features(unit_rows(mu), bar_order(bars), np.full((4, STYLE_DIMS), np.nan), head.style_center, head.style_scale)
    assert not x[:, -STYLE_DIMS:].any()
    # a head fitted before the tempo code (171 statistics) still loads and ignores tempi
    old = SearchHead(head.basis, head.bar_weight, head.coarse_dims, head.shortlist, head.fingerprint_hashes,
                     head.fingerprint_weight, song_projection=head.song_projection[: -(STYLE_DIMS - NOTE_STYLE_DIMS)],
                     style_center=head.style_center[:NOTE_STYLE_DIMS], style_scale=head.style_scale[:NOTE_STYLE_DIMS],
                     song_weight=head.song_weight)
    assert not old.reads_tempo
    np.testing.assert_array_equal(old.search_vectors(mu, bars, ph, 96.0), old.search_vectors(mu, bars, ph, 128.0))


def test_a_search_head_file_with_a_bad_song_projection_is_refused(tmp_path):
    head = SearchHead(np.eye(12, dtype=np.float32), 0.0, 4, 10, 0, 0.0, song_projection=np.ones((20, 4), np.float32),
                      style_center=np.zeros(171, np.float32), style_scale=np.ones(171, np.float32), song_weight=1.0)
    save_search_head(head, tmp_path)
    assert load_search_head(tmp_path, 8).song_dims == 4
    with pytest.raises(CheckpointError, match="song projection 4"):
        load_search_head(tmp_path, 12)


def test_an_index_of_the_shipped_model_finds_a_song_by_its_own_file(data_dir, tmp_path):
    from midivae.index import LatentIndex
    from midivae.index.build import build_index
    from midivae.index.search import search
    from midivae.model.api import load_model

    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:4]
    if len(files) < 4:
        pytest.skip("LPD-5 songs not found")
    model = load_model()
    build_index(files, tmp_path / "ix", model, workers=1)
    with LatentIndex.open(tmp_path / "ix") as ix:
        info = ix.info()
        assert (info.latent_dim, info.song_dims, info.vector_dims, info.coarse_dims) == (128, 192, 704, 32)
        assert info.search_id == model.search_id
        # the index keeps what takes the song part out of a query of several phrases
        np.testing.assert_array_equal(ix.layout.mean_axes, model.search_head.mean_axes)
        v = model.encode_search(np.zeros((2, *PHRASE_SHAPE), bool) | (np.arange(84) == 40)[None, None, None, :, None])
        np.testing.assert_array_equal(ix.layout.query_vectors(v[:1], 1), v[:1])
        np.testing.assert_allclose(ix.layout.query_vectors(v, 2), model.search_head.without_song(v))
        result = search(ix, str(files[2]), lambda: model, k=4)
        by_id = search(ix, result.hits[0].song_id, lambda: model, k=3)
        # the axes round-trip through the catalogue meta; damaged ones are refused as the index's error
        from midivae.errors import VectorIndexError
        from midivae.index.encoders import SearchLayout

        meta = ix.layout.to_meta()
        np.testing.assert_array_equal(SearchLayout.from_meta(meta).mean_axes, ix.layout.mean_axes)
        for bad in ("not base64!", meta["mean_axes"][:-8]):
            with pytest.raises(VectorIndexError, match="mean axes"):
                SearchLayout.from_meta({**meta, "mean_axes": bad})
        # an index from before the axes were kept takes them from the model of a file query
        from dataclasses import replace

        ix.layout = replace(ix.layout, mean_axes=None)
        assert search(ix, str(files[1]), lambda: model, k=1).hits[0].distance < 1e-4
        np.testing.assert_array_equal(ix.layout.mean_axes, model.search_head.mean_axes)
    assert len(result.hits) == 4 and result.hits[0].song_id.endswith(files[2].stem)
    assert result.hits[0].distance < 1e-4 and result.hits[0].same_content  # itself, at distance 0
    assert len(by_id.hits) == 3 and result.hits[0].song_id not in [h.song_id for h in by_id.hits]


def test_an_index_built_from_a_store_holds_the_vectors_of_its_files(data_dir, tmp_path):
    """The store keeps each song's tempo, so the shipped search head (which reads it) gives a song
    the same vectors whether the index reads its file or the store."""
    from midivae.data.ingest import ingest
    from midivae.index import LatentIndex
    from midivae.index.build import build_index
    from midivae.model.api import load_model

    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:3]
    if len(files) < 3:
        pytest.skip("LPD-5 songs not found")
    model = load_model()
    ingest(files, tmp_path / "store", workers=1)
    vectors = []
    for name, data in (("files", files), ("store", [tmp_path / "store"])):
        assert build_index(data, tmp_path / f"ix_{name}", model, workers=1).songs_without_tempo == 0
        with LatentIndex.open(tmp_path / f"ix_{name}") as ix:
            by_hash = {}
            for sid in ix.catalogue.song_ids():
                record = ix.song(sid)
                vids, _ = ix.catalogue.song_phrases(record.song_key)
                by_hash[record.content_hash] = ix.search_vectors(vids)
            vectors.append(by_hash)
    assert sorted(vectors[0]) == sorted(vectors[1]) and len(vectors[0]) == 3
    for key, v in vectors[0].items():
        np.testing.assert_allclose(vectors[1][key], v, atol=1e-5)
    # a store from before tempi were kept: its songs are indexed without one, and the report says so
    import sqlite3

    with sqlite3.connect(tmp_path / "store" / "manifest.sqlite") as db:
        db.execute("DROP TABLE song_tempo")
    assert build_index([tmp_path / "store"], tmp_path / "ix_old", model, workers=1).songs_without_tempo == 3


def test_the_rotation_is_square_and_orthonormal_for_few_or_many_rows():
    from midivae.model.search_head import fit_basis

    rng = np.random.default_rng(0)
    for n in (150, 400):  # fewer rows than content dims (192), and more
        basis = fit_basis(rng.standard_normal((n, 128)), rng.standard_normal((n, 64)))
        assert basis.shape == (192, 192)
        np.testing.assert_allclose(basis @ basis.T, np.eye(192), atol=1e-5)


def test_song_free_embed_is_the_several_phrase_space_as_unit_rows(real_phrases):
    """The experiments' exact version scores use the space the version task scores files in:
    the shipped model's several-phrase vectors, fingerprint columns left out, unit rows (any batch)."""
    from midivae.evaluate.baselines import model_embedding, song_free_embed
    from midivae.model.api import load_model

    model = load_model()
    phrases = real_phrases[:12]
    got = song_free_embed(model, batch=5)(phrases)
    emb = model_embedding(model)
    ref = np.asarray(emb.several_embed(phrases), np.float64)[:, : -emb.signature_dims]
    assert emb.signature_dims > 0 and got.shape == ref.shape
    np.testing.assert_allclose(got, _unit(ref), atol=1e-5)


def test_a_file_query_prefers_the_version_with_its_tempo(data_dir, tmp_path):
    """Two indexed files with the same notes at other tempi: a query of several phrases (scored
    without the song part) finds the one at its own tempo (or at double time) first; an index
    built by an encoder that does not read tempo ties them (order by id)."""
    from midivae.index import LatentIndex
    from midivae.index.build import build_index
    from midivae.index.encoders import BarProfileEncoder
    from midivae.index.search import search
    from midivae.io import read_lpd, write_midi
    from midivae.model.api import load_model
    from midivae.search_space import FILE_TEMPO_WEIGHT

    files = sorted((data_dir / "lpd5" / "lpd_5_cleansed").rglob("*.npz"))[:1]
    if not files:
        pytest.skip("LPD-5 songs not found")
    roll = read_lpd(files[0]).roll[: 16 * 48]  # 16 bars: 4 phrases
    songs, queries = tmp_path / "songs", tmp_path / "queries"
    songs.mkdir(), queries.mkdir()
    write_midi(songs / "a_slow.mid", roll, 90.0)
    write_midi(songs / "b_fast.mid", roll, 132.0)
    write_midi(queries / "at_132.mid", roll, 132.0)
    write_midi(queries / "at_66.mid", roll, 66.0)  # half time of 132
    model = load_model()
    build_index([songs], tmp_path / "ix", model, workers=1)
    with LatentIndex.open(tmp_path / "ix") as ix:
        assert ix.layout.tempo_weight == FILE_TEMPO_WEIGHT
        assert (ix.info().tempo_weight, ix.info().songs_with_tempo) == (FILE_TEMPO_WEIGHT, 2)
        for q in ("at_132.mid", "at_66.mid"):
            hits = search(ix, str(queries / q), lambda: model, k=2).hits
            assert [h.song_id for h in hits] == ["b_fast", "a_slow"]
            assert hits[1].distance - hits[0].distance == pytest.approx(FILE_TEMPO_WEIGHT * (1 - np.exp(-0.5 * (np.log2(132 / 90) / 0.03) ** 2)), abs=1e-4)
    enc = BarProfileEncoder(32)
    build_index([songs], tmp_path / "ix_plain", enc, workers=1)
    with LatentIndex.open(tmp_path / "ix_plain") as ix:
        assert ix.layout.tempo_weight == 0
        hits = search(ix, str(queries / "at_132.mid"), lambda: enc, k=2).hits
        assert [h.song_id for h in hits] == ["a_slow", "b_fast"] and hits[0].distance == pytest.approx(hits[1].distance)
