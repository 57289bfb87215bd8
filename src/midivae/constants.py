"""The one data form of midivae, named once.

A phrase is 4 bars of 4/4 music as a boolean array ``(BARS, STEPS_PER_BAR, N_PITCHES, N_TRACKS)``,
the layout of MuseGAN's LPD-5 phrase file. Batches add a leading axis.
"""

from __future__ import annotations

TRACK_NAMES: tuple[str, ...] = ("Drums", "Piano", "Guitar", "Bass", "Strings")
N_TRACKS = len(TRACK_NAMES)
DRUMS, PIANO, GUITAR, BASS, STRINGS = range(N_TRACKS)
PITCHED_TRACKS: tuple[int, ...] = (PIANO, GUITAR, BASS, STRINGS)
#: MIDI programs that LPD-5 stores for its tracks (drums carry 0 but play on the drum channel).
TRACK_PROGRAMS: tuple[int, ...] = (0, 0, 24, 32, 48)
#: 0-based MIDI channels used when writing (drums on the General MIDI drum channel).
TRACK_CHANNELS: tuple[int, ...] = (9, 0, 1, 2, 3)
#: Display colours, one per track (used by plots).
TRACK_COLORS: tuple[str, ...] = ("#444444", "#1f77b4", "#2ca02c", "#d62728", "#ff7f0e")

STEPS_PER_BEAT = 12
BEATS_PER_BAR = 4
STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR  # 48
BARS_PER_PHRASE = 4
STEPS_PER_PHRASE = STEPS_PER_BAR * BARS_PER_PHRASE  # 192

LOWEST_PITCH = 24  # C1
N_PITCHES = 84  # MIDI 24..107
HIGHEST_PITCH = LOWEST_PITCH + N_PITCHES - 1

PHRASE_SHAPE: tuple[int, int, int, int] = (BARS_PER_PHRASE, STEPS_PER_BAR, N_PITCHES, N_TRACKS)
PHRASE_CELLS = BARS_PER_PHRASE * STEPS_PER_BAR * N_PITCHES * N_TRACKS  # 80,640

#: LPD's own resolution (pypianoroll .npz files): 24 steps per beat, 128 pitches.
LPD_STEPS_PER_BEAT = 24
LPD_N_PITCHES = 128

DEFAULT_TEMPO = 120.0

#: the longest song a reader renders (~2 h 15 min at 120 BPM; LPD-5's shared songs reach 305 bars):
#: a damaged delta time or length in a file would otherwise ask for a roll of many gigabytes
MAX_SONG_BARS = 4096

#: General MIDI drum pitches a transcriber may choose between for one pattern: closed, pedal and
#: open hi-hat, ride, ride bell, crash (generated versions and the training views swap them)
CYMBALS: tuple[int, ...] = (42, 44, 46, 51, 53, 49)

MIDI_SUFFIXES: tuple[str, ...] = (".mid", ".midi", ".kar")
