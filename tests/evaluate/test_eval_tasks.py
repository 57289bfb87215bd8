from pathlib import Path

import numpy as np
import pytest

from midivae.evaluate import baselines, tasks
from midivae.evaluate.data import SongPhrases
from midivae.evaluate.embedding import Embedding


def identity(phrases):
    return np.asarray(phrases, dtype=np.float32).reshape(len(phrases), -1)


def constant(phrases):
    return np.ones((len(phrases), 8), dtype=np.float32)


def test_excerpt_identity_finds_every_repeat(songs):
    r = tasks.excerpt_retrieval(songs, identity, "euclidean")
    assert r["hit@1"] == 1.0 and r["mrr"] == 1.0
    assert r["n_queries"] == 3 * len(songs)


def test_excerpt_queries_a_seeded_sample_beyond_its_cap(songs):
    full = tasks.excerpt_retrieval(songs, identity, "euclidean")
    capped = tasks.excerpt_retrieval(songs, identity, "euclidean", max_queries=5, seed=3)
    assert capped["n_queries"] == 5 and capped["n_query_phrases"] == full["n_queries"] == full["n_query_phrases"]
    assert capped["n_index"] == full["n_index"]  # the index keeps every song's first half
    assert capped["hit@1"] == 1.0  # the identity finds its song from any query
    # the same rows for every method (a function of the rows and the seed), other rows for another seed
    rows = np.arange(100, 160)
    a = tasks.sample_queries(rows, 5, seed=3)
    assert np.array_equal(a, tasks.sample_queries(rows, 5, seed=3)) and np.all(np.diff(a) > 0)
    assert set(a) <= set(rows) and not np.array_equal(a, tasks.sample_queries(rows, 5, seed=4))
    assert np.array_equal(tasks.sample_queries(rows, 60, seed=3), rows)
    assert np.array_equal(tasks.sample_queries(rows, None, seed=3), rows)
    # a constant embedding still reads chance, not more, on the sample
    c = tasks.excerpt_retrieval(songs, constant, "euclidean", max_queries=7)
    assert c["hit@1"] == pytest.approx(1 / len(songs))


def test_excerpt_constant_gets_chance_not_one(songs):
    r = tasks.excerpt_retrieval(songs, constant, "euclidean")
    assert r["hit@1"] == pytest.approx(1 / len(songs))
    assert r["hit@10"] == pytest.approx(10 / len(songs))


def test_excerpt_random_floor_near_chance(songs):
    r = tasks.excerpt_retrieval(songs, baselines.random_floor(16, seed=1))
    assert r["hit@1"] < 0.35


def test_original_protocol_identity_and_constant(songs):
    assert tasks.original_protocol(songs, identity, "cosine")["top1"] == 1.0
    c = tasks.original_protocol(songs, constant, "euclidean")
    assert c["top1"] == pytest.approx(1 / len(songs))


def test_original_protocol_uses_sampling(make_songs):
    songs = make_songs(40)
    noisy = Embedding("noisy", identity, "euclidean", 8, 32,
                      sample=lambda ph, rng: rng.standard_normal((len(ph), 8)).astype(np.float32))
    assert tasks.original_protocol(songs, noisy)["top1"] < 0.3


def test_original_protocol_encodes_in_chunks_with_the_same_draws(make_songs):
    """Sampled encodings go through the model a chunk at a time (bounded memory), drawing the
    same noise as one call over every song would."""
    songs = make_songs(tasks.QUERY_CHUNK + 44)
    sizes: list[int] = []

    def sample(ph, rng):
        sizes.append(len(ph))
        return rng.standard_normal((len(ph), 8)).astype(np.float32)

    first = np.stack([s.phrases[0] for s in songs])
    whole = sample(first, np.random.default_rng(3))
    sizes.clear()
    emb = Embedding("noisy", identity, "euclidean", 8, 32, sample=sample)
    packed = np.stack([s.packed[0] for s in songs])
    chunked = tasks._sampled_in_chunks(emb, packed, np.random.default_rng(3), np.full(len(songs), np.nan))
    assert sizes == [tasks.QUERY_CHUNK, 44]
    np.testing.assert_array_equal(chunked, whole)


def _copies_brute_force(flat, rows):
    pairs = [(qi, o) for qi, r in enumerate(rows) for o in range(len(flat))
             if o != r and (flat.packed[o] == flat.packed[r]).all()]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("collide", [False, True], ids=["hashes", "every-hash-equal"])
def test_exact_copies_of_queries_found_by_hash_and_confirmed(make_songs, monkeypatch, collide):
    """The copies a phrase-level ranking masks are exactly the byte-equal phrases, also when
    every hash collides (hashes only narrow the search)."""
    songs = make_songs(8, half=3, seed=4)  # each song holds its phrases twice
    flat = tasks.flatten(songs)
    rows = np.array([0, 4, 7, 20, 47])
    if collide:
        monkeypatch.setattr(tasks.altered, "_row_hashes", lambda packed: np.zeros(len(packed), np.uint64))
    qs, cols = tasks._duplicate_mask_pairs(flat, rows)
    want_qs, want_cols = _copies_brute_force(flat, rows)
    assert qs.tolist() == want_qs and cols.tolist() == want_cols
    assert len(want_qs) == len(rows)  # one copy each


def test_copies_in_songs_added_after_the_sampled_ones_still_count_as_the_answer(make_songs):
    """Queries sampled from the first songs, searched among them and more songs after them (an
    experiment's distractors): a copy of the original in the added songs is the same answer."""
    songs = make_songs(6, half=3, seed=1)
    queries = tasks.altered_queries(songs, 12, ["drop_20pct_notes"], seed=0)
    twin = SongPhrases.from_phrases("twin", songs[0].phrases)
    r = tasks.robustness(songs + [twin], identity, "euclidean", queries=queries, any_key=False)
    assert r["drop_20pct_notes/phrase_hit1"] == 1.0


def test_row_hashes_tell_phrases_apart(make_songs):
    flat = tasks.flatten(make_songs(8, half=3, seed=4))
    h = tasks._row_hashes(flat.packed)
    assert h.dtype == np.uint64 and len(np.unique(h)) == len(flat) // 2  # every phrase twice
    np.testing.assert_array_equal(tasks._row_hashes(flat.packed, chunk=5), h)


def test_robustness_identity_and_constant(make_songs):
    songs = make_songs(10, half=3, seed=2)
    r = tasks.robustness(songs, identity, "euclidean", n_queries=30, any_key_queries=10)
    # dropping 20% of a random phrase's notes keeps it nearest to its original
    assert r["drop_20pct_notes/phrase_hit1"] == 1.0
    assert r["drop_20pct_notes/song_hit1"] == 1.0
    # any-key undoes a transposition exactly (up to notes pushed off the keyboard)
    assert r["transpose_up_2/song_hit1_anykey"] == 1.0
    assert r["transpose_up_2/n_anykey"] == 10
    c = tasks.robustness(songs, constant, "euclidean", n_queries=30)
    assert c["drop_20pct_notes/song_hit1"] == pytest.approx(1 / len(songs))
    # each song holds its phrases twice; exact copies count as the same answer, so 1/(6-1) = 1/5
    assert c["drop_20pct_notes/phrase_hit1"] == pytest.approx(1 / (60 - 1), rel=0.5)


def test_robustness_gives_the_phrase_hit_per_length_of_the_querys_song():
    from midivae.evaluate.data import SongPhrases

    rng = np.random.default_rng(3)
    lengths = [5, 5, 22, 34]  # one song in each group but the first, which has two
    songs = [SongPhrases.from_phrases(f"s{i}", rng.random((n, 4, 48, 84, 5)) < 0.004) for i, n in enumerate(lengths)]
    r = tasks.robustness(songs, identity, "euclidean", n_queries=40, alterations=["drop_20pct_notes"], any_key=False)
    groups = ("0-19", "20-29", "30+")
    counts = [r[f"drop_20pct_notes/n_in_songs_{g}"] for g in groups]
    assert sum(counts) == r["drop_20pct_notes/n"] == 40 and all(c > 0 for c in counts)
    assert all(r[f"drop_20pct_notes/phrase_hit1_in_songs_{g}"] == 1.0 for g in groups)  # identity finds every original
    c = tasks.robustness(songs, constant, "euclidean", n_queries=40, alterations=["drop_20pct_notes"], any_key=False)
    overall = sum(c[f"drop_20pct_notes/phrase_hit1_in_songs_{g}"] * c[f"drop_20pct_notes/n_in_songs_{g}"] for g in groups) / 40
    assert overall == pytest.approx(c["drop_20pct_notes/phrase_hit1"])  # the groups split the same queries
    assert c["drop_20pct_notes/phrase_hit1_in_songs_30+"] == pytest.approx(1 / 66)  # every phrase tied


def test_nearest_others_set_the_original_and_its_copies_aside_and_leave_d_as_it_was():
    d = np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 0.5, 0.1, 4.0]])
    before = d.copy()
    # query 0's original is row 0 and row 1 is its exact copy; query 1's original is row 2
    found = tasks.nearest_others(d, np.array([0, 2]), np.array([0, 1]), np.array([0]), np.array([1]))
    assert found.tolist() == [2, 1]
    np.testing.assert_array_equal(d, before)


def test_differing_cells_is_the_share_of_the_originals_cells():
    from midivae.evaluate.data import pack

    a = np.zeros((1, 4, 48, 84, 5), bool)
    a.reshape(-1)[:200] = True
    b = a.copy()
    b.reshape(-1)[300] = True  # one cell more
    c = a.copy()
    c.reshape(-1)[:20] = False  # 20 cells fewer
    packed = pack(np.concatenate([a, b, c]))
    share = tasks.differing_cells(packed, np.array([0, 0, 0]), np.array([0, 1, 2]), chunk=2)
    np.testing.assert_allclose(share, [0.0, 1 / 200, 20 / 200])


def test_robustness_says_what_its_phrase_misses_found():
    """A song holding a phrase and a near-copy of it (one cell more, where the embedding is blind):
    the embedding ties the two, so half of each one's queries miss, always to the other one."""
    rng = np.random.default_rng(7)
    ph = rng.random((3, 4, 48, 84, 5)) < 0.004  # ~320 cells each
    ph[..., 0, :] = False
    ph[1] = ph[0]
    ph[1, 0, 10, 0, 1] = True  # the near-copy: one cell (pitch 0) more
    songs = [SongPhrases.from_phrases("a", ph[:2]), SongPhrases.from_phrases("b", ph[2:])]

    def blind_to_pitch_0(phrases):
        return identity(np.asarray(phrases)[..., 1:, :])

    r = tasks.robustness(songs, blind_to_pitch_0, "euclidean", n_queries=3, alterations=["drop_20pct_notes"], any_key=False)
    assert r["drop_20pct_notes/phrase_hit1"] == pytest.approx(2 / 3)  # 1/2, 1/2, 1
    assert r["drop_20pct_notes/phrase_misses"] == pytest.approx(1.0)
    assert r["drop_20pct_notes/phrase_misses_same_song"] == 1.0
    assert r["drop_20pct_notes/phrase_misses_near_copy"] == 1.0
    apart = [SongPhrases.from_phrases(f"s{i}", rng.random((2, 4, 48, 84, 5)) < 0.004) for i in range(2)]
    exact = tasks.robustness(apart, identity, "euclidean", n_queries=4, alterations=["drop_20pct_notes"], any_key=False)
    assert exact["drop_20pct_notes/phrase_misses"] == 0.0 and "drop_20pct_notes/phrase_misses_near_copy" not in exact


def test_robustness_skips_unchanged_queries(make_songs):
    songs = make_songs(6, half=2)  # random phrases with piano only at one cell: piano->guitar changes all
    from midivae.evaluate.data import SongPhrases

    drums_only = []
    for s in songs:
        ph = s.phrases.copy()
        ph[..., 1:] = False
        ph[:, 0, 0, 0, 0] = True
        drums_only.append(SongPhrases.from_phrases(s.song_id, ph))
    r = tasks.robustness(drums_only, identity, "euclidean", n_queries=20)
    assert r["piano_to_guitar/n"] == 0 and r["piano_to_guitar/skipped_unchanged"] == 20
    assert r["transpose_up_2/n"] == 0


def test_genre_identity_and_constant(make_songs):
    rng = np.random.default_rng(0)
    from midivae.evaluate.data import SongPhrases

    labels, songs = {}, []
    protos = {g: rng.random((1, 4, 48, 84, 5)) < 0.02 for g in ("a", "b", "c")}
    for i in range(42):  # 18 a, 12 b, 12 c: every class has 10+ other members
        g = "abc"[i % 3] if i < 36 else "a"
        ph = protos[g] | (rng.random((2, 4, 48, 84, 5)) < 0.002)
        songs.append(SongPhrases.from_phrases(f"s{i}", ph))
        labels[f"s{i}"] = g
    good = tasks.genre_consistency(songs, identity, "cosine", labels=labels)
    assert good["balanced_knn_accuracy"] == 1.0 and good["precision@10"] == 1.0
    # the same neighbourhoods with the genres shuffled over the songs reach far less
    assert good["shuffled95_balanced"] < 0.8 and good["shuffled95_precision@10"] < 0.8
    assert good["same_genre_auc"] == 1.0 and good["shuffled95_auc"] < 0.7
    flat = tasks.genre_consistency(songs, constant, "euclidean", labels=labels)
    assert flat["balanced_knn_accuracy"] == pytest.approx(1 / 3)
    assert flat["precision@10"] == pytest.approx(flat["chance_precision@10"])
    # a constant embedding gives every shuffle the same figures as the true labels
    assert flat["shuffled95_balanced"] == pytest.approx(1 / 3)
    assert flat["shuffled95_precision@10"] == pytest.approx(flat["chance_precision@10"])
    assert flat["same_genre_auc"] == pytest.approx(0.5) and flat["shuffled95_auc"] == pytest.approx(0.5)


def test_version_identification_identity_and_constant(make_songs):
    from midivae.evaluate.data import SongPhrases
    from midivae.evaluate.versions import VersionSet

    rng = np.random.default_rng(3)
    base = make_songs(8, half=2, seed=3)
    files, groups = [], []
    for s in base:
        files.append(s)
        groups.append(s.song_id)
    for s in base[:4]:
        ph = s.phrases & (rng.random(s.phrases.shape) > 0.1)  # a sparser transcription
        files.append(SongPhrases.from_phrases(s.song_id + "_v2", ph))
        groups.append(s.song_id)
    vs = VersionSet(files, groups)
    r = tasks.version_identification(vs, identity, "euclidean")
    assert r["n_queries"] == 8 and r["hit@1"] == 1.0
    assert r["hit@1_lo95"] == r["hit@1_hi95"] == 1.0  # every query a hit: no spread
    c = tasks.version_identification(vs, constant, "euclidean")
    assert c["hit@1"] == pytest.approx(1 / 11)
    assert c["hit@1_lo95"] <= c["hit@1"] <= c["hit@1_hi95"]


def test_version_identification_searches_files_with_several_embed(make_songs):
    """Query files of several phrases are searched in ``several_embed``'s space (both sides)."""
    from midivae.evaluate.data import SongPhrases
    from midivae.evaluate.versions import VersionSet

    base = make_songs(6, half=2, seed=4)
    files = list(base) + [SongPhrases.from_phrases(s.song_id + "_v2", s.phrases) for s in base[:3]]
    vs = VersionSet(files, [s.song_id for s in base] + [s.song_id for s in base[:3]])
    for several, hit1 in ((None, 1.0), (identity, 1.0), (constant, 1 / 8)):
        r = tasks.version_identification(vs, Embedding("m", identity, "euclidean", -1, -1, several_embed=several))
        assert r["n_queries"] == 6 and r["hit@1"] == pytest.approx(hit1)
        if several is not None:  # given as a function of the vectors: the same space, each phrase embedded once
            calls = []
            counted = lambda p: (calls.append(len(p)), identity(p))[1]  # noqa: E731
            of = Embedding("m", counted, "euclidean", -1, -1, several_embed=several, several_of=lambda v: several(v))
            assert tasks.version_identification(vs, of) == r and sum(calls) == sum(len(f) for f in files)


def _with_tempi(songs, tempi):
    from dataclasses import replace

    return [replace(s, tempo=float(t)) for s, t in zip(songs, tempi)]


def tempo_only(phrases, tempo):
    """An embedding that sees nothing but the song's tempo: it finds a song iff tasks pass the tempi."""
    return np.stack([np.log2(tempo), np.zeros(len(phrases))], axis=1).astype(np.float32)


def test_tasks_pass_each_phrases_song_tempo_to_an_embedding_that_reads_it(make_songs):
    songs = _with_tempi(make_songs(10, half=3, seed=2), 60.0 * 1.1 ** np.arange(10))
    emb = Embedding("tempo", tempo_only, "euclidean", 2, 8, reads_tempo=True)
    assert tasks.excerpt_retrieval(songs, emb)["hit@1"] == 1.0
    r = tasks.robustness(songs, emb, n_queries=30, any_key_queries=10)  # altered copies keep the tempo
    for name in ("drop_20pct_notes", "shift_eighth", "transpose_up_2"):
        assert r[f"{name}/song_hit1"] == 1.0
    assert r["transpose_up_2/song_hit1_anykey"] == 1.0
    assert tasks.original_protocol(songs, emb)["top1"] == pytest.approx(1.0)
    # an embedding that does not read tempi is called with the phrases alone
    assert tasks.excerpt_retrieval(songs, identity, "euclidean")["hit@1"] == 1.0


def test_version_folder_keeps_each_songs_tempo(make_songs, tmp_path):
    from midivae.evaluate.versions import generated_versions

    songs = _with_tempi(make_songs(3, half=2, seed=5), [90.0, 133.0, float("nan")])
    vs = generated_versions(songs, tmp_path, 2, 1)
    tempo = {s.song_id: s.tempo for s in vs.songs}
    assert tempo["song00.mid"] == tempo["song00__v2.mid"] == pytest.approx(90.0)
    assert tempo["song01.mid"] == pytest.approx(133.0)
    assert tempo["song02.mid"] == pytest.approx(120.0)  # unknown: written at MIDI's default
    from midivae.evaluate.versions import VERSION_PRESETS

    hard = generated_versions(songs, tmp_path / "hard", 2, 1, VERSION_PRESETS["hard"])
    tempo = {s.song_id: s.tempo for s in hard.songs}
    assert tempo["song00.mid"] == pytest.approx(90.0) and tempo["song00__v2.mid"] != pytest.approx(90.0, abs=1e-3)
    assert abs(tempo["song00__v2.mid"] / 90.0 - 1) <= 0.04 + 1e-3  # a transcriber's own BPM, near the song's


def test_version_folder_round_trip(make_songs, tmp_path):
    from midivae.evaluate.versions import generated_versions, load_versions, make_version_folder

    songs = make_songs(4, half=2, seed=5)
    csv_path = make_version_folder(songs, tmp_path, n_versioned=2, seed=1)
    vs = load_versions(tmp_path, csv_path)
    assert len(vs.songs) == 6 and vs.n_queries == 4
    by_name = {s.song_id: s for s in vs.songs}
    assert not np.array_equal(by_name["song00.mid"].packed, by_name["song00__v2.mid"].packed[: len(by_name["song00.mid"])])
    assert np.array_equal(by_name["song03.mid"].phrases, songs[3].phrases)
    again = generated_versions(songs, tmp_path / "again", 2, 1)  # the same folder, read back in one call
    assert again.group == vs.group and all(np.array_equal(a.packed, b.packed) for a, b in zip(again.songs, vs.songs))
    # a song's own file holds the song's array, not a copy; a re-rendering its own
    originals = {f"{s.song_id}.mid": s.packed for s in songs}
    for v in again.songs:
        assert (v.packed is originals[v.song_id]) if v.song_id in originals else not any(
            np.shares_memory(v.packed, o) for o in originals.values()), v.song_id


def test_version_folder_mixes_npz_and_midi(mixed_version_folder):
    """LPD-5 .npz files and MIDI files in one folder: each MIDI file written from a shared song
    finds its .npz first (raw cosine), and the CSV's absent file is reported, not fatal."""
    from midivae.evaluate.baselines import raw
    from midivae.evaluate.versions import load_versions

    vs = load_versions(mixed_version_folder)  # the folder's versions.csv
    assert len(vs.songs) == 12 and vs.n_queries == 8
    assert {Path(s.song_id).suffix for s in vs.songs} == {".mid", ".npz"}
    assert len(vs.skipped) == 1 and "absent.mid" in vs.skipped[0]
    r = tasks.version_identification(vs, raw(True))
    assert r["hit@1"] == 1.0 and r["n_songs_with_versions"] == 4


def test_version_csvs_as_people_write_them(make_songs, tmp_path):
    """The held-out versions come with a CSV of unknown form: other header names, no header, tabs
    or semicolons, bare file names of files in subfolders, names without their suffix, absolute
    paths, Windows separators. Each names the same pairs as the plain ``file,song`` table."""
    import shutil

    from midivae.evaluate.versions import load_versions, make_version_folder

    make_version_folder(make_songs(4, half=2, seed=5), tmp_path / "flat", n_versioned=2, seed=1)
    reference = load_versions(tmp_path / "flat")
    pairs = [line.split(",") for line in (tmp_path / "flat" / "versions.csv").read_text().splitlines()[1:]]
    folder = tmp_path / "nested"  # every file in a folder of its own song
    for name, song in pairs:
        (folder / song).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "flat" / name, folder / song / name)
    for name in {f.name for f in (tmp_path / "flat").glob("*.mid")} - {n for n, _ in pairs}:
        (folder / "other").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "flat" / name, folder / "other" / name)
    forms = {
        "headerless": "".join(f"{n},{s}\n" for n, s in pairs),
        "tabs, other names": "midi_file\tclique\n" + "".join(f"{n}\t{s}\n" for n, s in pairs),
        "semicolons, song first": "work;filename\n" + "".join(f"{s};{n}\n" for n, s in pairs),
        "unknown names, no suffix": "a,b\n" + "".join(f"{Path(n).stem},{s}\n" for n, s in pairs),
        "absolute paths": "path,song\n" + "".join(f"{folder / s / n},{s}\n" for n, s in pairs),
        "windows separators": "# exported\nfile,song\n\n" + "".join(f"{s}\\{n},{s}\n" for n, s in pairs),
    }

    def grouped(vs):
        return sorted((g, Path(s.song_id).name) for g, s in zip(vs.group, vs.songs) if not g.startswith("__distractor__"))

    assert reference.n_queries == 4 and len(grouped(reference)) == 6  # the CSV names every file
    for form, text in forms.items():
        (tmp_path / "versions.csv").write_text(text)
        vs = load_versions(folder, tmp_path / "versions.csv")
        assert len(vs.songs) == len(reference.songs) and not vs.skipped, form
        assert grouped(vs) == grouped(reference), form
    # LPD's layout, <MSD id>/<md5>.npz: a file named by the folder it is alone in
    lpd = tmp_path / "lpd"
    for i, (name, song) in enumerate(pairs):
        (lpd / f"TR{i:03d}").mkdir(parents=True)
        shutil.copy(tmp_path / "flat" / name, lpd / f"TR{i:03d}" / name)
    (tmp_path / "versions.csv").write_text("msd_id,song\n" + "".join(f"TR{i:03d},{s}\n" for i, (_, s) in enumerate(pairs)))
    vs = load_versions(lpd, tmp_path / "versions.csv")
    assert grouped(vs) == grouped(reference) and not vs.skipped


def test_a_version_csv_name_two_files_share_is_skipped(make_songs, tmp_path):
    """A bare name that two files of the folder carry could be either: it is skipped and said."""
    import shutil

    from midivae.errors import InvalidInputError
    from midivae.evaluate.versions import load_versions, make_version_folder

    make_version_folder(make_songs(4, half=2, seed=5), tmp_path, n_versioned=2, seed=1)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "song00.mid", tmp_path / "copy" / "song00.mid")
    (tmp_path / "versions.csv").write_text("file,song\nsong00.mid,a\nsong00__v2.mid,a\nsong01.mid,b\nsong01__v2.mid,b\n")
    vs = load_versions(tmp_path)
    assert vs.n_queries == 4  # song00.mid at the top level is found by its path
    (tmp_path / "list.csv").write_text("file,song\ncopy/../song00.mid,a\nx/song00.mid,a\n")
    with pytest.raises(InvalidInputError, match="matches 2 files"):
        load_versions(tmp_path, tmp_path / "list.csv")
    (tmp_path / "list.csv").write_text("track,artist,year\nsong00.mid,x,1999\n")
    with pytest.raises(InvalidInputError, match="track, artist, year"):
        load_versions(tmp_path, tmp_path / "list.csv")


def test_a_version_folder_without_a_pair_is_refused(make_songs, tmp_path):
    """A CSV that pairs no two readable files is a clear input error, not a failure in the task."""
    from midivae.errors import InvalidInputError
    from midivae.evaluate.versions import load_versions, make_version_folder

    make_version_folder(make_songs(3, half=2, seed=5), tmp_path, n_versioned=1, seed=1)
    (tmp_path / "versions.csv").write_text("file,song\nmissing.mid,a\nsong00.mid,a\n")
    with pytest.raises(InvalidInputError, match="no song has two readable versions.*missing.mid"):
        load_versions(tmp_path)


def _song_roll(seed: int = 0, bars: int = 32) -> np.ndarray:
    """A song roll with short notes on every track (one onset per beat, varying pitch)."""
    from midivae.constants import N_PITCHES, N_TRACKS, STEPS_PER_BAR

    rng = np.random.default_rng(seed)
    roll = np.zeros((bars * STEPS_PER_BAR, N_PITCHES, N_TRACKS), dtype=bool)
    beat = STEPS_PER_BAR // 4
    for t in range(N_TRACKS):
        for b in range(bars * 4):
            roll[b * beat : b * beat + 6, rng.integers(20, 60), t] = True
    return roll


def test_hard_versions_change_the_form():
    from dataclasses import replace

    from midivae.constants import STEPS_PER_BAR
    from midivae.evaluate.versions import VERSION_PRESETS, rerender

    roll = _song_roll()
    beat = STEPS_PER_BAR // 4
    only = replace(VERSION_PRESETS["basic"], p_each=0.0, drop_fraction=0.0, jitter_fraction=0.0, revoice_fraction=0.0,
                   max_transpose=1)
    # p_each 0 still applies one random note-level kind; seeds where it is the bar shift or the
    # transposition are fine for these checks, which look at time and track structure only
    onsets = lambda r: np.flatnonzero(r.any(axis=(1, 2)))  # noqa: E731
    # beat shift: notes that sat on bar lines now sit on another beat of the bar
    downbeats = np.zeros_like(roll)
    downbeats[::STEPS_PER_BAR] = roll[::STEPS_PER_BAR]
    for seed in range(4):
        steps = onsets(rerender(downbeats, np.random.default_rng(seed), replace(only, p_beat_shift=1.0)))
        assert len(steps) and (steps % beat == 0).all() and (steps % STEPS_PER_BAR != 0).all()
    # double / half time: the song is about twice / half as long
    lengths = {len(rerender(roll, np.random.default_rng(s), replace(only, p_time_scale=1.0))) for s in range(12)}
    assert any(n >= 1.9 * len(roll) for n in lengths) and any(n <= 0.6 * len(roll) + 3 * STEPS_PER_BAR for n in lengths)
    # a part left out: one pitched track silent, drums kept
    r = rerender(roll, np.random.default_rng(0), replace(only, p_drop_track=1.0))
    assert r[..., 0].any() and (~r.any(axis=(0, 1))).sum() >= 1
    # a section cut or repeated: length changes by one 8-bar section (+- the bar shift)
    diffs = {len(rerender(roll, np.random.default_rng(s), replace(only, p_cut_section=1.0))) - len(roll) for s in range(12)}
    assert any(d <= -5 * STEPS_PER_BAR for d in diffs) and any(d >= 5 * STEPS_PER_BAR for d in diffs)


def test_a_drum_change_leaves_the_drums_out_or_thins_them_and_swaps_cymbals():
    from midivae.evaluate.versions import _CYMBALS, _change_drums

    track = np.array([0] * 400 + [1] * 100)
    pitch = np.r_[np.resize([36, 38, 42, 46, 51], 400), np.full(100, 60)]
    keep = np.ones(500, bool)
    out = {}
    for seed in range(12):
        p, k = _change_drums(track, pitch, keep, np.random.default_rng(seed), 1.0)
        assert (p[track == 1] == 60).all() and k[track == 1].all()  # pitched notes untouched
        kept = k[track == 0].sum()
        out["left out" if kept == 0 else "thinned"] = True
        if kept:
            assert 120 < kept < 280  # about half
            np.testing.assert_array_equal(p[(track == 0) & ~np.isin(pitch, _CYMBALS)], pitch[(track == 0) & ~np.isin(pitch, _CYMBALS)])
            assert np.isin(p[(track == 0) & np.isin(pitch, _CYMBALS)], _CYMBALS).all()
    assert out == {"left out": True, "thinned": True}
    rng = np.random.default_rng(0)
    p, k = _change_drums(track, pitch, keep, rng, 0.0)
    assert p is pitch and k is keep and rng.random() == np.random.default_rng(0).random()  # off: no draw


def test_basic_versions_are_note_level_only():
    from midivae.evaluate.versions import VERSION_PRESETS

    b = VERSION_PRESETS["basic"]
    assert b.p_beat_shift == b.p_drop_track == b.p_time_scale == b.p_cut_section == 0.0


class PerfectModel:
    """A lookup 'autoencoder': latent = the phrase's id, decode gives it back exactly."""

    latent_dim = 1
    checkpoint_id = "perfect"

    def __init__(self, songs):
        self.table = np.concatenate([s.phrases for s in songs]).astype(np.float32)
        self.keys = self.table.reshape(len(self.table), -1)

    def encode(self, phrases):
        flat = np.asarray(phrases, np.float32).reshape(len(phrases), -1)
        idx = np.array([np.nonzero((self.keys == f).all(axis=1))[0][0] for f in flat], dtype=np.float32)
        return idx[:, None], np.zeros((len(phrases), 1), np.float32)

    def decode(self, z):
        i = np.clip(np.round(np.abs(np.asarray(z)[:, 0])), 0, len(self.table) - 1).astype(int)
        return self.table[i]


def test_reconstruction_of_a_perfect_model(make_songs):
    songs = make_songs(4, half=2)
    r = tasks.reconstruction(songs, PerfectModel(songs), n_phrases=10, n_samples=8)
    assert r["recon/f1/all"] == 1.0 and r["recon/precision/Piano"] == 1.0
    assert r["real/tonal_distance"] == pytest.approx(r["reconstruction/tonal_distance"])
    assert r["real/empty_bar_rate/Drums"] == r["reconstruction/empty_bar_rate/Drums"]


def test_cost_reports_dims_and_speed(songs):
    c = tasks.cost(songs, baselines.chroma(), n_encode=16, n_queries=3)
    assert c["dims"] == 240 and c["bytes_per_phrase"] == 960
    assert c["encode_phrases_per_s"] > 0 and c["query_ms"] > 0
    assert "speedup_vs_raw_dense" not in c


def test_paired_cost_times_the_raw_dense_scan_beside_the_query(songs, monkeypatch):
    monkeypatch.setattr(tasks.timing, "TIMING_MIN_SECONDS", 0.0)
    c = tasks.cost(songs, baselines.chroma(), n_encode=16, n_queries=3, paired=True)
    assert c["query_ms_paired"] > 0 and c["raw_dense_ms_paired"] > 0
    assert c["speedup_vs_raw_dense"] == pytest.approx(c["raw_dense_ms_paired"] / c["query_ms_paired"])
    assert (c["paired_rounds"], c["paired_dense_queries"]) == (tasks.PAIRED_ROUNDS, tasks.PAIRED_DENSE_QUERIES)


class LinearModel:
    """A deterministic toy encoder: per-track note counts as mu, a fixed log-variance."""

    latent_dim = 5
    checkpoint_id = "toy"

    def __init__(self):
        self.calls = 0

    def encode(self, phrases):
        self.calls += 1
        mu = np.asarray(phrases, np.float32).sum(axis=(1, 2, 3)) + 1.0
        return mu, np.full_like(mu, -20.0)


def test_model_rows_share_one_encoder(songs):
    model = LinearModel()
    rows = baselines.model_embeddings(model)
    assert [r.name for r in rows] == ["model", "model_l2"] and [r.distance for r in rows] == ["cosine", "euclidean"]
    a = rows[0].embed(songs[0].phrases)
    calls = model.calls
    b = rows[1].embed(songs[0].phrases)
    assert model.calls == calls and np.array_equal(a, b)
    # sampled encodings with a tiny sigma equal the mean
    z = rows[1].encode_sampled(songs[0].phrases, np.random.default_rng(0))
    assert np.allclose(z, a, atol=1e-3)
    assert tasks.cost(songs, rows[1], n_encode=8, n_queries=2)["dims"] == 5
    # the caller's encoder, cleared once both rows ran: the next call encodes again
    enc = baselines.CachedEncoder(model)
    rows = baselines.model_embeddings(model, encoder=enc)
    rows[0].embed(songs[0].phrases)
    calls = model.calls
    rows[1].embed(songs[0].phrases)
    assert model.calls == calls
    enc.clear()
    assert np.array_equal(rows[1].embed(songs[0].phrases), b) and model.calls == calls + 1


def test_scans_find_the_exact_nearest():
    from midivae.evaluate.metrics import pairwise, prepare
    from midivae.evaluate.tasks import ExactScan, two_stage_top_k

    rng = np.random.default_rng(1)
    x, q = rng.standard_normal((200, 16)).astype(np.float32), rng.standard_normal((3, 16)).astype(np.float32)
    for distance in ("cosine", "euclidean"):
        px, pq = prepare(x, distance), prepare(q, distance)
        d = pairwise(pq, px)
        for column_major in (False, True):
            scan = ExactScan.of(px.vectors, px.sq_norms, distance, column_major)
            for i in range(3):
                assert list(scan.top_k(pq.vectors[i], 10)) == list(np.argsort(d[i])[:10])
    # two-stage: the scan-and-re-rank a query runs gives the order the evaluation's distances give
    px, pq = prepare(x, "cosine", 4, 30), prepare(q, "cosine", 4, 30)
    d = pairwise(pq, px)
    coarse = ExactScan.of(px.coarse.vectors, px.coarse.sq_norms, "cosine", True)
    for i in range(3):
        for k in (50, 20):  # a shortlist shorter than k, and one longer
            got = two_stage_top_k(coarse, px.vectors, px.sq_norms, "cosine", 30, pq.coarse.vectors[i], pq.vectors[i], k)
            assert list(got) == list(np.argsort(d[i], kind="stable")[:k])
    # with fingerprint columns: the query's ranking is the one the evaluation's distances give
    sig = rng.integers(0, 4, (200, 8)).astype(np.float32)  # few values: many equal components
    xs, qs = np.concatenate([x, sig], 1), np.concatenate([q, sig[[3, 50, 120]]], 1)
    px, pq = prepare(xs, "cosine", 4, 30, 8, 0.2), prepare(qs, "cosine", 4, 30, 8, 0.2)
    d = pairwise(pq, px)
    coarse = ExactScan.of(px.coarse.vectors, px.coarse.sq_norms, "cosine", False)
    for i in range(3):
        got = two_stage_top_k(coarse, px.vectors, px.sq_norms, "cosine", 30, pq.coarse.vectors[i], pq.vectors[i], 20,
                              (px.signatures, pq.signatures[i], 0.2))
        assert list(got) == list(np.argsort(d[i], kind="stable")[:20])


def test_the_prefix_bound_scan_finds_the_exact_nearest():
    """The pruned scan reads most rows in part only, and finds the plain scan's nearest: the same
    distances, at every k, for vectors whose variance sits in a few axes and for vectors whose
    does not, Euclidean and (unit vectors) cosine."""
    from midivae.evaluate.metrics import prepare
    from midivae.evaluate.tasks import ExactScan, PrefixBoundScan

    rng = np.random.default_rng(2)
    spread = rng.standard_normal((400, 24)).astype(np.float32)
    skewed = spread * np.geomspace(4.0, 0.05, 24).astype(np.float32) @ np.linalg.qr(rng.standard_normal((24, 24)))[0]
    dup = np.concatenate([skewed[:300], skewed[:100]]).astype(np.float32)  # exact ties
    for x in (spread, skewed.astype(np.float32), dup):
        q = np.concatenate([x[:3] + 0.01, rng.standard_normal((2, 24)).astype(np.float32)])
        for distance in ("euclidean", "cosine"):
            px, pq = prepare(x, distance), prepare(q, distance)
            plain = ExactScan.of(px.vectors, px.sq_norms, distance, False)
            pruned = PrefixBoundScan.of(px.vectors)
            for i in range(len(q)):
                y = pq.vectors[i]
                true = ((px.vectors - y) ** 2).sum(axis=1)
                for k in (1, 10, 100, 400, 500):
                    got, dist = pruned.top_k(y, k)  # distances up to a constant (|q|^2, rotated)
                    assert len(got) == min(k, len(x)) and len(set(got.tolist())) == len(got)
                    assert np.allclose(true[got], np.sort(true[plain.top_k(y, min(k, len(x)))]), atol=1e-4)
                    assert np.all(np.diff(dist) >= 0) and np.allclose(dist - dist[0], true[got] - true[got][0], atol=1e-3)


def test_timing_passes_fill_the_minimum_time():
    """Every method is sampled over the same stretch of time: passes go on past the minimum count."""
    import time

    from midivae.evaluate.tasks import _seconds_per_call

    calls = []
    fast = _seconds_per_call(lambda i: calls.append(i), 2, repeats=3, min_seconds=0.05)
    assert len(calls) > 1 + 3 * 2 and fast >= 0  # many more than three passes of two calls
    calls.clear()
    slow = _seconds_per_call(lambda i: (calls.append(i), time.sleep(0.03)), 1, repeats=3, min_seconds=0.0)
    assert len(calls) == 1 + 3 and slow >= 0.03  # the warm-up call, then exactly three passes


def test_query_mean_trims_each_query_files_worst_phrases():
    # two query files: 4 phrases, then 1 phrase; two candidate files
    near = np.array([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5], [0.9, 0.5], [0.4, 0.7]])
    qstarts, qlen = np.array([0, 4]), np.array([4, 1])
    np.testing.assert_allclose(tasks.query_mean(near, qstarts, qlen), [[0.375, 0.5], [0.4, 0.7]])
    # trim 0.25: the first file keeps its 3 nearest phrases per candidate; one phrase is always kept
    np.testing.assert_allclose(tasks.query_mean(near, qstarts, qlen, 0.25), [[0.2, 0.5], [0.4, 0.7]])
    np.testing.assert_allclose(tasks.query_mean(near, qstarts, qlen, 0.9), [[0.1, 0.5], [0.4, 0.7]])


def test_version_identification_trim_forgives_a_part_one_version_lacks(make_songs):
    """A version with a section the other lacks, close to a part of some other file: the plain
    mean charges that section in full and finds the other file; the trimmed mean finds the song."""
    from midivae.evaluate.data import SongPhrases
    from midivae.evaluate.versions import VersionSet

    base = make_songs(6, half=3, seed=7)
    rng = np.random.default_rng(7)
    section = rng.random((2, *base[0].phrases.shape[1:])) < 0.2  # dense: far from every sparse phrase
    near_section = section & (rng.random(section.shape) > 0.05)
    files = list(base) + [
        SongPhrases.from_phrases("song00_v2", np.concatenate([base[0].phrases[:3], section])),
        SongPhrases.from_phrases("other", np.concatenate([make_songs(1, half=3, seed=8)[0].phrases, near_section])),
    ]
    vs = VersionSet(files, [s.song_id for s in base] + ["song00", "other"])
    plain = tasks.version_identification(vs, identity, "euclidean")
    trimmed = tasks.version_identification(vs, identity, "euclidean", trim=0.4)
    assert plain["n_queries"] == 2 and plain["hit@1"] == 0.5 and trimmed["hit@1"] == 1.0


def test_tempo_agreement_and_term():
    from midivae.search_space import TEMPO_WIDTH, tempo_agreement, tempo_term

    k = tempo_agreement(120.0, np.array([120.0, 60.0, 240.0, 120.0 * 2 ** 0.03, 90.0, np.nan, 0.0]))
    np.testing.assert_allclose(k[:3], 1.0)  # the same tempo, half and double time
    assert k[3] == pytest.approx(np.exp(-0.5 * (0.03 / TEMPO_WIDTH) ** 2))
    assert k[4] < 1e-6 and k[5] == k[6] == 0.0  # another tempo; unknown ones
    assert not tempo_agreement(float("nan"), np.array([120.0])).any()
    np.testing.assert_allclose(tempo_term(120.0, np.array([120.0, np.nan]), 0.05), [0.0, 0.05])
    many = tempo_agreement(np.array([120.0, 90.0, np.nan]), np.array([60.0, 90.0]))  # (queries, candidates)
    np.testing.assert_allclose(many, [[1.0, tempo_agreement(120.0, np.array([90.0]))[0]], [many[1, 0], 1.0], [0.0, 0.0]])


def test_version_task_adds_the_tempo_term_for_queries_of_several_phrases(make_songs):
    from midivae.evaluate.versions import VersionSet

    base = make_songs(8, half=2, seed=3)
    # four songs with two files each, the pair sharing a tempo no other file has; the embedding
    # sees nothing (constant), so only the tempo term can find the other version
    songs = _with_tempi(base, np.repeat(60.0 * 1.15 ** np.arange(4), 2))
    vs = VersionSet(songs, [f"s{i // 2}" for i in range(8)])
    plain = Embedding("constant", lambda ph, tempo=None: constant(ph), "euclidean", 8, 32, reads_tempo=True)
    assert tasks.version_identification(vs, plain)["hit@1"] == pytest.approx(1 / 7)
    with_term = Embedding("constant", plain.embed, "euclidean", 8, 32, reads_tempo=True, tempo_weight=0.03)
    assert tasks.version_identification(vs, with_term)["hit@1"] == 1.0


def near_copy_songs(n_songs: int = 4, per_song: int = 5, seed: int = 7) -> list[SongPhrases]:
    """Songs of near-copies: each phrase its song's base with one note held a step longer (a
    different note each), so an embedding of note onsets cannot tell a song's phrases apart."""
    from midivae.constants import PHRASE_SHAPE, STEPS_PER_PHRASE

    rng = np.random.default_rng(seed)
    songs = []
    for s in range(n_songs):
        base = np.zeros((STEPS_PER_PHRASE, 84, 5), bool)
        for _ in range(40):  # notes of 2 steps, at least 3 steps apart in their column
            t, p, k = 4 * int(rng.integers(0, 46)), int(rng.integers(20, 70)), int(rng.integers(1, 5))
            base[t : t + 2, p, k] = True
        starts = np.argwhere(base & ~np.roll(base, 1, axis=0))
        phrases = []
        for j in range(per_song):
            p = base.copy()
            t, pitch, k = starts[j]
            p[t + 2, pitch, k] = True  # held one step longer
            phrases.append(p.reshape(PHRASE_SHAPE))
        songs.append(SongPhrases.from_phrases(f"near{s}", np.stack(phrases)))
    return songs


def onset_counts(phrases):
    """Note onsets per track and bar: blind to how long a note is held."""
    x = np.asarray(phrases, bool).reshape(len(phrases), 4, 48, 84, 5)
    flat = x.reshape(len(phrases), 192, 84, 5)
    on = flat & ~np.concatenate([np.zeros_like(flat[:, :1]), flat[:, :-1]], axis=1)
    return on.reshape(len(phrases), 4, 48, 84, 5).sum(axis=(2, 3)).reshape(len(phrases), -1).astype(np.float32) + 1


def test_a_verified_search_orders_near_copies_by_their_notes():
    from dataclasses import replace

    from midivae.verify import DEFAULT_VERIFY

    songs = near_copy_songs()
    plain = Embedding("onsets", onset_counts, "cosine", 20, 80)
    verified = replace(plain, verify=DEFAULT_VERIFY)
    kw = dict(n_queries=20, alterations=["drop_20pct_notes"], any_key=False)
    r0, r1 = tasks.robustness(songs, plain, **kw), tasks.robustness(songs, verified, **kw)
    # the onsets tie a song's 5 near-copies: a fifth of a hit without the verify, the notes find the original
    assert r0["drop_20pct_notes/phrase_hit1"] == pytest.approx(0.2, abs=0.05)
    assert r1["drop_20pct_notes/phrase_hit1"] >= 0.9
    assert r1["drop_20pct_notes/verified_share"] == 1.0 and "drop_20pct_notes/verified_share" not in r0
    assert r0["drop_20pct_notes/song_hit1"] == r1["drop_20pct_notes/song_hit1"] == 1.0
    c = tasks.cost(songs, verified, n_encode=8, n_queries=5)
    from midivae.verify import PhraseNotes

    n_notes = PhraseNotes.from_phrases(np.concatenate([s.phrases for s in songs])).counts.mean()
    assert c["verified_share"] == 1.0 and c["notes_bytes_per_phrase"] == pytest.approx(3 * n_notes)
    e0, e1 = tasks.excerpt_retrieval(songs, plain), tasks.excerpt_retrieval(songs, verified)
    assert e0["hit@1"] == e1["hit@1"] == 1.0  # the verify moves distances within a song only here


def test_the_prefix_bound_scan_hands_the_verify_cosine_distances():
    """A cosine search through the prefix-bound scan (half its squared distances: cosine distances
    up to a constant) is re-ordered by the verify as the plain scan's is (the margin is in cosine
    units), on 30 songs of near-copies whose onsets tie."""
    from midivae.evaluate.metrics import prepare
    from midivae.evaluate.tasks import ExactScan, PrefixBoundScan
    from midivae.verify import DEFAULT_VERIFY, PhraseNotes, query_codes, reorder_one

    phrases = np.concatenate([s.phrases for s in near_copy_songs(n_songs=30)])
    x = prepare(onset_counts(phrases), "cosine")
    notes = PhraseNotes.from_phrases(phrases)
    plain, pruned = ExactScan.of(x.vectors, x.sq_norms, "cosine", False), PrefixBoundScan.of(x.vectors)
    moved = 0
    for i in range(0, len(phrases), 7):
        q, codes = x.vectors[i], query_codes(notes, i)
        top = plain.top_k(q, 10)
        want = reorder_one(top, -plain.similarities(q)[top], codes, notes, DEFAULT_VERIFY)
        rows, dist = pruned.top_k(q, 10)
        cosine = 1.0 - x.vectors[rows] @ q
        assert np.allclose(0.5 * (dist - dist[0]), cosine - cosine[0], atol=1e-5)  # the margin's units
        got = reorder_one(rows, 0.5 * dist, codes, notes, DEFAULT_VERIFY)
        assert got[0] == want[0] == i  # the notes find the phrase itself among its near-copies
        moved += top[0] != i
    assert moved  # the onsets alone put another near-copy first somewhere


def test_the_version_task_verifies_as_the_index_does():
    from dataclasses import replace

    from midivae.constants import PHRASE_SHAPE, STEPS_PER_PHRASE
    from midivae.evaluate.versions import VersionSet
    from midivae.verify import DEFAULT_VERIFY

    near = near_copy_songs(1, per_song=5)[0].phrases  # near-copies: onset-blind embeddings tie them
    original = near[0].reshape(STEPS_PER_PHRASE, 84, 5)
    sparser = original.copy()
    for t, pitch, k in np.argwhere(original & ~np.roll(original, 1, axis=0))[5:12]:
        sparser[t : t + 2, pitch, k] = False  # a version missing 7 of the notes (not those the near-copies hold longer)
    files = [SongPhrases.from_phrases("a", near[:1]), SongPhrases.from_phrases("a_v2", sparser.reshape(1, *PHRASE_SHAPE))]
    files += [SongPhrases.from_phrases(f"other{j}", near[j : j + 1]) for j in range(1, 5)]
    vs = VersionSet(files, ["a", "a", "b", "c", "d", "e"])
    plain = Embedding("onsets", onset_counts, "cosine", 20, 80)
    r0 = tasks.version_identification(vs, plain)
    r1 = tasks.version_identification(vs, replace(plain, verify=DEFAULT_VERIFY))
    # the sparser version ties its original with 4 near-copies by onsets (a fifth of a hit); its
    # notes are all in the original, which the verify puts first
    assert r1["hit@1"] > r0["hit@1"] and r1["hit@1"] >= 0.5
