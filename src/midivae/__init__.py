"""midivae: find similar music in a MIDI collection with a VAE and a latent-vector index."""

from midivae.errors import MidiVaeError

__version__ = "0.1.0"

__all__ = ["MidiVaeError", "__version__"]
