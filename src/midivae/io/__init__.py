"""Readers and writers: MIDI, LPD-5 ``.npz`` songs and MuseGAN phrase files."""

from midivae.io.lpd import read_lpd
from midivae.io.midi import read_midi, write_midi
from midivae.io.musegan import iter_musegan, musegan_count, write_musegan

__all__ = ["iter_musegan", "musegan_count", "read_lpd", "read_midi", "write_midi", "write_musegan"]
