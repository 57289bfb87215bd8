import numpy as np

from midivae.evaluate import alterations as A
from midivae.song import roll_to_notes


def phrase():
    ph = np.zeros((1, 4, 48, 84, 5), bool)
    ph[0, 0, 0:10, 40, 1] = True  # piano note
    ph[0, 0, 12:20, 40, 1] = True  # repeated piano note
    ph[0, 1, :, 30, 3] = True  # bass, one bar
    ph[0, 0, 5, 10, 0] = True  # drum hit
    ph[0, 0, 40:48, 50, 2] = True  # guitar note across a bar line
    ph[0, 1, 0:5, 50, 2] = True
    return ph


def test_transpose_moves_pitched_tracks_only():
    ph = phrase()
    up = A.transpose(ph, 2)
    assert up[0, 0, 0, 42, 1] and not up[0, 0, 0, 40, 1]
    assert up[0, 0, 5, 10, 0]  # drums untouched
    assert A.transpose(ph, 84).sum() == ph[..., 0].sum()  # everything pitched falls off


def test_drop_notes_removes_whole_notes():
    ph = phrase()
    n_before = len(roll_to_notes(ph[0].reshape(192, 84, 5)))
    out = A.drop_notes(ph, 0.2, np.random.default_rng(0))
    after = roll_to_notes(out[0].reshape(192, 84, 5))
    assert len(after) == n_before - 1  # round(0.2 * 5) = 1 note
    # every remaining note is one of the original notes, unchanged
    before = roll_to_notes(ph[0].reshape(192, 84, 5))
    orig = set(zip(before.track, before.pitch, before.start, before.end))
    assert set(zip(after.track, after.pitch, after.start, after.end)) <= orig


def test_time_shift_uses_previous_phrase():
    ph = phrase()
    prev = np.zeros_like(ph)
    prev[0, 3, 47, 60, 4] = True  # a strings note in the last step of the previous phrase
    out = A.time_shift(ph, 6, prev)
    flat = out[0].reshape(192, 84, 5)
    assert flat[5, 60, 4] and flat[6:16, 40, 1].all()


def test_move_track_and_changed():
    ph = phrase()
    moved = A.move_track(ph)
    assert not moved[..., 1].any() and moved[0, 0, 0, 40, 2]
    assert A.changed(ph, moved)[0]
    no_piano = ph.copy()
    no_piano[..., 1] = False
    assert not A.changed(no_piano, A.move_track(no_piano))[0]
