"""Readers and writers: MIDI, LPD-5 ``.npz`` songs and MuseGAN phrase files."""

from midivae.io.lpd import read_lpd
from midivae.io.midi import read_midi, write_midi

__all__ = ["read_lpd", "read_midi", "write_midi"]
