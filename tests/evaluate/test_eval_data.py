import numpy as np
import pytest
import scipy.sparse as sp

from midivae.evaluate import baselines
from midivae.evaluate.data import load_eval_data
from midivae.evaluate.labels import single_genre_labels


def test_store_test_split_is_evaluated_and_train_fits(lpd_dir, tmp_path, monkeypatch):
    from midivae.data.ingest import ingest
    from midivae.data.store import SplitConfig

    files = sorted(lpd_dir.rglob("*.npz"))[:12]
    src = tmp_path / "src"
    for f in files:
        dst = src / f.parent.name / f.name
        dst.parent.mkdir(parents=True)
        dst.symlink_to(f)
    ingest([src], tmp_path / "store", workers=1, split=SplitConfig(validation=0.0, test=0.5))
    ev = load_eval_data(tmp_path / "store", max_fit_songs=50)
    test_ids = {s.song_id for s in ev.test}
    fit_ids = {s.song_id for s in ev.fit}
    assert test_ids and fit_ids and not (test_ids & fit_ids)
    assert len(test_ids) + len(fit_ids) == len(files)
    assert ev.built_from  # the folder the store was ingested from, for the regenerate command
    s = ev.test[0]
    assert s.phrases.shape[1:] == (4, 48, 84, 5) and np.all(np.diff(s.bar_offsets) > 0)
    # the whole store with one split first (the at-scale version experiments)
    from midivae.evaluate.data import load_store_split, load_store_split_first

    songs, n_first = load_store_split_first(tmp_path / "store", "test")
    test_first = [x.song_id for x in load_store_split(tmp_path / "store", "test", None)]
    assert [x.song_id for x in songs[:n_first]] == test_first and len(songs) == len(files)
    # the experiments' version sets: the split's songs re-rendered among all the store's songs
    from midivae.evaluate.versions import validation_version_sets

    sets = validation_version_sets(tmp_path / "store", ("basic",), split="test", folder=tmp_path / "sets")
    assert list(sets) == ["basic"] and len(sets["basic"].songs) == len(files) + n_first
    assert sets["basic"].n_queries == 2 * n_first
    assert (tmp_path / "sets" / "basic" / "versions.csv").is_file()  # written where asked
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    again = validation_version_sets(tmp_path / "store", ("basic",), split="test")
    assert again["basic"].n_queries == sets["basic"].n_queries
    assert not any((tmp_path / "tmp").iterdir())  # no folder left behind in the temporary directory


def test_folder_split_by_hash_is_disjoint_and_stable(lpd_dir):
    a = load_eval_data(lpd_dir, max_songs=5, max_fit_songs=3)
    b = load_eval_data(lpd_dir, max_songs=5, max_fit_songs=3)
    assert [s.song_id for s in a.test] == [s.song_id for s in b.test]
    assert not ({s.song_id for s in a.test} & {s.song_id for s in a.fit})


def test_single_genre_labels(tmp_path):
    amg = tmp_path / "lpd5" / "labels" / "amg"
    amg.mkdir(parents=True)
    (amg / "id_list_Jazz.txt").write_text("TRAAAAA128F0000001\nTRAAAAA128F0000002\n")
    (amg / "id_list_Pop_Rock.txt").write_text("TRAAAAA128F0000002\nTRAAAAA128F0000003\n")
    (tmp_path / "lpd5" / "cleansed_ids.txt").write_text("0123456789abcdef0123456789abcdef    TRAAAAA128F0000003\n")
    labels = single_genre_labels(["TRAAAAA128F0000001", "TRAAAAA128F0000002", "x/0123456789abcdef0123456789abcdef", "other"], amg)
    assert labels == {"TRAAAAA128F0000001": "Jazz", "x/0123456789abcdef0123456789abcdef": "Pop/Rock"}


def test_pca_matches_exact_pca_on_small_data():
    rng = np.random.default_rng(0)
    x = (rng.random((300, 500)) < 0.02).astype(np.float64)
    for block, width in enumerate((80, 50, 30, 15)):  # four planted directions of distinct strength
        cols = slice(100 * block, 100 * block + width)
        x[:, cols] = np.maximum(x[:, cols], (rng.random((300, 1)) < 0.5))
    p = baselines.fit_pca(sp.csr_matrix(x), 8, max_rows=1000)
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    assert p.explained_variance_ratio == pytest.approx((s[:8] ** 2).sum() / (s**2).sum(), rel=0.05)
    overlap = np.linalg.svd(vt[:4] @ p.components[:4].T.astype(np.float64))[1]
    assert overlap.min() > 0.99
    proj = p.transform(sp.csr_matrix(x))
    assert np.allclose(proj, xc @ p.components.T.astype(np.float64), atol=1e-3)


def test_bag_of_bars_ignores_bar_order():
    rng = np.random.default_rng(1)
    ph = rng.random((2, 4, 48, 84, 5)) < 0.01
    rolled = np.roll(ph, 1, axis=1)
    a, b = baselines.bag_of_bars_vectors(ph), baselines.bag_of_bars_vectors(rolled)
    assert abs(a - b).max() < 1e-6
    assert abs(baselines.raw_vectors(ph) - baselines.raw_vectors(rolled)).max() == 1


def test_shared_rows_are_the_songs_held_once(songs):
    from midivae.evaluate.data import flatten, share_rows

    flat = flatten(songs)
    shared = share_rows(songs, flat)
    assert [s.song_id for s in shared] == [s.song_id for s in songs]
    for before, after in zip(songs, shared):
        assert np.array_equal(before.packed, after.packed) and np.array_equal(before.bar_offsets, after.bar_offsets)
        assert np.shares_memory(after.packed, flat.packed)
    again = flatten(shared)
    assert np.array_equal(again.packed, flat.packed) and np.array_equal(again.starts, flat.starts)


def test_flatten_without_a_copy_reads_the_same_rows():
    """``flatten(songs, copy=False)`` (the version task's: its files' phrases are held already)
    gives every row, batch and index of the copied form, reading the songs' own arrays."""
    import numpy as np

    from midivae.evaluate.data import SongPhrases, flatten

    rng = np.random.default_rng(0)
    songs = [SongPhrases(f"s{i}", rng.integers(0, 256, (n, 10080), dtype=np.uint8), 4 * np.arange(n), 90.0 + i)
             for i, n in enumerate([3, 1, 7, 2, 5])]
    copied, read = flatten(songs), flatten(songs, copy=False)
    rows = rng.permutation(len(copied))
    assert len(read) == len(copied) == 18 and np.array_equal(read.packed[rows], copied.packed[rows])
    assert all(np.array_equal(a, b) for a, b in zip(read.batches(None, 4), copied.batches(None, 4)))
    for field in ("song", "bar_offsets", "starts", "tempo"):
        assert np.array_equal(getattr(read, field), getattr(copied, field)), field
    assert not any(np.shares_memory(copied.packed, s.packed) for s in songs)
    assert read.packed.parts[2] is songs[2].packed  # no copy
