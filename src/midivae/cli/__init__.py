"""The ``midivae`` command: a thin layer that parses arguments, calls the library and prints.

Each command group lives in its own module and registers itself on :data:`main`. Every
:class:`~midivae.errors.MidiVaeError` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import sys

import click

from midivae import __version__
from midivae.errors import MidiVaeError

COMMAND_MODULES = ("ingest", "model", "index", "evaluate")


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MidiVaeError as exc:
            click.echo(f"midivae: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="midivae")
def main() -> None:
    """Find similar music in a MIDI collection.

    Songs are cut into 4-bar, 5-track pianorolls (LPD-5 form), encoded by a variational
    autoencoder, and searched in a persistent index of latent vectors.

    \b
    Typical path:
      midivae ingest SONGS/ --out store/      # MIDI / LPD .npz -> phrase store
      midivae train --data store/ --out run/  # or use the shipped model
      midivae index build --data SONGS/ --out index/
      midivae search query.mid --index index/
    """


for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"midivae.cli.{_name}").register(main)
    except ModuleNotFoundError as exc:  # a command group not written yet
        if exc.name != f"midivae.cli.{_name}":
            raise
