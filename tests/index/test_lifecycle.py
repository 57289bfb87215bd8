"""Build, add, remove and rebuild: every path to the same collection gives the same answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from midivae.errors import IndexMismatchError, NotFoundError, VectorIndexError
from midivae.index import BarProfileEncoder, IndexSpec, LatentIndex, add_to_index, build_index, remove_from_index
from midivae.index.search import query_from_song, rank_songs


def answers(index_path: Path, queries: list[str]) -> list[list[tuple[str, float]]]:
    with LatentIndex.open(index_path) as ix:
        out = []
        for q in queries:
            hits = rank_songs(ix, query_from_song(ix, q, None, None, False), k=8)
            out.append([(h.song_id, round(h.distance, 5)) for h in hits])
        return out


def subset(song_dir: Path, names: list[str], dest: Path) -> Path:
    dest.mkdir()
    for n in names:
        shutil.copy(song_dir / f"{n}.npz", dest / f"{n}.npz")
    return dest


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_add_remove_rebuild_equal_fresh_build(kind, song_dir, encoder, tmp_path):
    names = sorted(p.stem for p in song_dir.glob("*.npz"))
    spec = IndexSpec(kind=kind)
    fresh = tmp_path / "fresh"
    build_index([song_dir], fresh, encoder, spec)

    inc = tmp_path / "inc"
    build_index([subset(song_dir, names[:12], tmp_path / "a")], inc, encoder, spec)
    report = add_to_index(inc, [subset(song_dir, names[12:], tmp_path / "b")], encoder)
    assert report.songs_added == len(names) - 12
    remove_from_index(inc, names[3:9])
    add_to_index(inc, [song_dir], encoder)  # re-adds the removed six, skips the rest
    rebuilt = tmp_path / "fresh"
    build_index([song_dir], rebuilt, encoder, spec, overwrite=True)

    with LatentIndex.open(fresh) as a, LatentIndex.open(inc) as b:
        assert sorted(a.catalogue.song_ids()) == sorted(b.catalogue.song_ids()) == names
        assert len(a.phrases) == len(b.phrases)
    queries = names[::5]
    a, b, c = answers(inc, queries), answers(fresh, queries), answers(rebuilt, queries)
    assert [[s for s, _ in q] for q in a] == [[s for s, _ in q] for q in b] == [[s for s, _ in q] for q in c]
    for x, y in zip(a, b):  # equal up to float summation order
        np.testing.assert_allclose([d for _, d in x], [d for _, d in y], atol=1e-4)


def test_ids_stay_stable(song_dir, encoder, tmp_path):
    build_index([song_dir], tmp_path / "ix", encoder)
    with LatentIndex.open(tmp_path / "ix") as ix:
        keep = ix.catalogue.song_ids()[-1]
        before = ix.catalogue.song_phrases(ix.song(keep).song_key)[0]
        vec = ix.phrases.vectors(before)
    remove_from_index(tmp_path / "ix", [ix_id for ix_id in sorted(p.stem for p in song_dir.glob("*.npz"))[:5]])
    with LatentIndex.open(tmp_path / "ix") as ix:
        after = ix.catalogue.song_phrases(ix.song(keep).song_key)[0]
        np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(ix.phrases.vectors(after), vec)


def test_other_checkpoint_is_refused(song_dir, encoder, tmp_path):
    build_index([song_dir], tmp_path / "ix", encoder)
    with pytest.raises(IndexMismatchError):
        add_to_index(tmp_path / "ix", [song_dir], BarProfileEncoder(encoder.latent_dim, seed=7))
    with LatentIndex.open(tmp_path / "ix") as ix:
        assert ix.info().generation == "gen-000001"  # nothing was written


def test_remove_is_all_or_nothing(song_dir, encoder, tmp_path):
    build_index([song_dir], tmp_path / "ix", encoder)
    first = sorted(p.stem for p in song_dir.glob("*.npz"))[0]
    with pytest.raises(NotFoundError):
        remove_from_index(tmp_path / "ix", [first, "no-such-song"])
    with LatentIndex.open(tmp_path / "ix") as ix:
        assert ix.catalogue.find(first) is not None


def test_build_refuses_existing_index_and_bad_sources(song_dir, encoder, tmp_path, data_dir):
    build_index([song_dir], tmp_path / "ix", encoder)
    with pytest.raises(VectorIndexError):
        build_index([song_dir], tmp_path / "ix", encoder)
    with pytest.raises(VectorIndexError):  # only corrupt files: nothing to index
        build_index([data_dir / "midi" / "corrupted"], tmp_path / "bad", encoder)
    assert not (tmp_path / "bad" / "MANIFEST.json").exists()
    with pytest.raises(VectorIndexError):
        LatentIndex.open(tmp_path / "nothing-here")
    # adding an empty folder is a mistake to report, not a silent "0 songs added"
    from midivae.errors import NotFoundError
    from midivae.index.build import add_to_index

    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no MIDI file"):
        add_to_index(tmp_path / "ix", [tmp_path / "empty"], encoder)
    assert add_to_index(tmp_path / "ix", [song_dir], encoder).songs_added == 0  # all there already: fine


def test_build_skips_bad_files_and_indexes_midi(data_dir, encoder, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted((data_dir / "midi" / "multitrack_pop").glob("*.mid"))[:3]:
        shutil.copy(f, src / f.name)
    for f in (data_dir / "midi" / "corrupted").glob("*.mid"):
        shutil.copy(f, src / f"bad_{f.name}")
    report = build_index([src], tmp_path / "ix", encoder)
    assert report.songs_added == 3 and len(report.skipped) == 3
    with LatentIndex.open(tmp_path / "ix") as ix:
        info = ix.info()
        assert info.n_songs == 3 and info.checkpoint_id == encoder.checkpoint_id
        rec = ix.song(sorted(p.stem for p in src.glob("[0-9]*.mid"))[0])
        assert rec.source == "midi" and len(rec.content_hash) == 32


def test_song_vector_is_normalised_mean_of_phrases(song_dir, encoder, tmp_path):
    build_index([song_dir], tmp_path / "ix", encoder)
    with LatentIndex.open(tmp_path / "ix") as ix:
        ids, vectors = ix.song_vectors()
        assert len(ids) == 24 and vectors.shape == (24, encoder.latent_dim)
        vids, _ = ix.catalogue.song_phrases(ix.song(ids[4]).song_key)
        mean = ix.phrases.vectors(vids).mean(0)
        np.testing.assert_allclose(vectors[4], mean / np.linalg.norm(mean), atol=1e-5)
