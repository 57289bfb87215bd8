"""Searching by file or song id: ranking against a brute-force reference, --any-key, --bars, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from midivae.cli import main
from midivae.constants import DRUMS, PITCHED_TRACKS
from midivae.errors import IndexMismatchError, InvalidInputError, NotFoundError
from midivae.index import BarProfileEncoder, LatentIndex, build_index, search
from midivae.index.search import parse_bars, query_from_file, rank_songs, transpose_phrases
from midivae.index.sources import read_phrases
from midivae.io import write_midi


@pytest.fixture(scope="module")
def index(song_dir, encoder, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ix") / "index"
    build_index([song_dir], path, encoder, checkpoint="builtin:bar-profile:32")
    return path


def reference_ranking(ix: LatentIndex, qvec: np.ndarray, rule: str) -> list[tuple[str, float]]:
    out = []
    q = qvec / np.linalg.norm(qvec, axis=1, keepdims=True)
    for song_id in ix.catalogue.song_ids():
        vids, _ = ix.catalogue.song_phrases(ix.song(song_id).song_key)
        v = ix.phrases.vectors(vids)
        nearest = np.maximum(1 - q @ v.T, 0).min(axis=1)
        out.append((song_id, float(nearest.mean() if rule == "mean" else nearest.min())))
    return sorted(out, key=lambda t: t[1])


@pytest.mark.parametrize("rule", ["mean", "nearest"])
def test_ranking_equals_brute_force(rule, index, song_dir, encoder):
    query = sorted(song_dir.glob("*.npz"))[5]
    with LatentIndex.open(index) as ix:
        q = query_from_file(query, encoder, (8, 40), any_key=False)
        hits = rank_songs(ix, q, k=10, rule=rule, candidates=len(ix.phrases), verify=None)  # the vectors alone
        ref = reference_ranking(ix, q.vectors[0], rule)[:10]
        assert [h.distance for h in hits] == pytest.approx([d for _, d in ref], abs=1e-5)
        # the default candidate pool finds the same top songs on this small index
        default = rank_songs(ix, q, k=5, rule=rule, verify=None)
        assert [h.song_id for h in default] == [h.song_id for h in hits[:5]]


def test_file_query_reports_same_content_and_bars(index, song_dir, encoder):
    query = sorted(song_dir.glob("*.npz"))[3]
    with LatentIndex.open(index) as ix:
        result = search(ix, str(query), lambda: encoder, k=3)
        top = result.hits[0]
        assert top.song_id == query.stem and top.same_content and top.distance == pytest.approx(0, abs=1e-5)
        assert all(m.query_bar == m.hit_bar or m.distance < 1e-5 for m in top.matches)
        clipped = search(ix, str(query), lambda: encoder, k=3, bars=(8, 24))
        assert clipped.n_query_phrases <= 4
        assert {m.query_bar for m in clipped.hits[0].matches} <= set(range(8, 24))


def test_song_id_query_excludes_itself(index, song_dir):
    name = sorted(p.stem for p in song_dir.glob("*.npz"))[0]
    with LatentIndex.open(index) as ix:
        result = search(ix, name, lambda: pytest.fail("no encoder needed"), k=30)
        assert result.excluded == (name,)
        assert name not in [h.song_id for h in result.hits]
        assert len(result.hits) == len(ix.catalogue.song_ids()) - 1


def test_any_key_finds_a_transposed_copy(index, song_dir, encoder, tmp_path):
    source = sorted(song_dir.glob("*.npz"))[7]
    phrases = read_phrases(source).phrases
    moved = transpose_phrases(phrases, 3)
    np.testing.assert_array_equal(moved[..., DRUMS], phrases[..., DRUMS])
    assert moved[..., list(PITCHED_TRACKS)].sum() <= phrases[..., list(PITCHED_TRACKS)].sum()
    write_midi(tmp_path / "cover.mid", moved)
    with LatentIndex.open(index) as ix:
        plain = search(ix, str(tmp_path / "cover.mid"), lambda: encoder, k=5)
        any_key = search(ix, str(tmp_path / "cover.mid"), lambda: encoder, k=5, any_key=True)
    top = any_key.hits[0]
    assert top.song_id == source.stem and top.transpose == -3
    assert top.distance < 0.02
    own = [h for h in plain.hits if h.song_id == source.stem]
    assert not own or own[0].distance > top.distance


def test_any_key_by_song_id_rereads_its_file(index, song_dir, encoder):
    name = sorted(p.stem for p in song_dir.glob("*.npz"))[2]
    with LatentIndex.open(index) as ix:
        result = search(ix, name, lambda: encoder, k=3, any_key=True)
    assert name not in [h.song_id for h in result.hits] and len(result.hits) == 3


def test_bad_queries_give_domain_errors(index, data_dir, encoder, tmp_path):
    corrupted = data_dir / "midi" / "corrupted"
    with LatentIndex.open(index) as ix:
        for name in ("truncated.mid", "not_midi.mid", "empty.mid"):
            with pytest.raises(InvalidInputError):
                search(ix, str(corrupted / name), lambda: encoder)
        with pytest.raises(NotFoundError):
            search(ix, "no-such-song", lambda: encoder)
        with pytest.raises(NotFoundError):
            search(ix, str(tmp_path / "missing.mid"), lambda: encoder)
        with pytest.raises(NotFoundError, match="a folder; a query is one file"):
            search(ix, str(tmp_path), lambda: encoder)
        with pytest.raises(IndexMismatchError):
            search(ix, str(corrupted.parent / "lpd5_rendered" / next(iter(
                sorted(p.name for p in (corrupted.parent / "lpd5_rendered").glob("*.mid"))))),
                lambda: BarProfileEncoder(encoder.latent_dim, seed=3))
        silent = tmp_path / "silent.mid"
        write_midi(silent, np.zeros((1, 4, 48, 84, 5), bool))
        with pytest.raises(InvalidInputError):
            search(ix, str(silent), lambda: encoder)
    for bad in ("3", "a:b", "8:4", "-1:3"):
        with pytest.raises(InvalidInputError):
            parse_bars(bad)
    assert parse_bars("4:") == (4, 2**31)


def test_cli_search_table_json_and_one_line_errors(index, song_dir, data_dir, tmp_path):
    runner = CliRunner()
    query = str(sorted(song_dir.glob("*.npz"))[1])
    table = runner.invoke(main, ["search", query, "--index", str(index), "-k", "3"])
    assert table.exit_code == 0, table.output
    assert "rank" in table.output and "(same content)" in table.output
    data = json.loads(runner.invoke(main, ["search", query, "--index", str(index), "-k", "3", "--json"]).output)
    assert len(data["hits"]) == 3 and data["hits"][0]["same_content"] and data["rule"] == "mean"
    info = json.loads(runner.invoke(main, ["index", "info", str(index), "--json"]).output)
    assert info["n_songs"] == 24 and info["kind"] == "exact"

    for args in (["search", str(data_dir / "midi" / "corrupted" / "truncated.mid"), "--index", str(index)],
                 ["search", "no-such-song", "--index", str(index)],
                 ["index", "remove", str(index), "no-such-song"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1
        err = result.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("midivae: error:")

    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    result = runner.invoke(main, ["index", "add", str(copy), "--data", str(song_dir), "--checkpoint",
                                  "builtin:bar-profile:16"])
    assert result.exit_code == 1 and "checkpoint" in result.stderr


@pytest.mark.parametrize("rule", ["nearest", "mean"])
def test_any_key_ranking_equals_brute_force(rule, index, song_dir, encoder):
    from midivae.index.search import encode_query

    query = sorted(song_dir.glob("*.npz"))[9]
    with LatentIndex.open(index) as ix:
        q = encode_query(encoder, read_phrases(query, (0, 32)), str(query), "file", any_key=True)
        hits = rank_songs(ix, q, k=8, rule=rule, verify=None)  # the vectors alone
        best: dict[str, float] = {}
        for shift_vectors in q.vectors:
            for song_id, d in reference_ranking(ix, shift_vectors, rule):
                best[song_id] = min(best.get(song_id, np.inf), d)
        ref = sorted(best.values())[:8]
        assert [h.distance for h in hits] == pytest.approx(ref, abs=1e-5)
