"""``midivae ingest``, ``midivae info`` and ``midivae show``: data in, and a look at it."""

from __future__ import annotations

from pathlib import Path

import click

from midivae.cli.common import echo_json, json_option, progress_enabled, quiet_option


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Store folder (created, or resumed).")
@click.option("--workers", "-j", default=2, show_default=True, help="Reader processes.")
@click.option("--allow-any-meter", is_flag=True, help="Cut files not in 4/4 on a 4-beat grid too, instead of skipping them.")
@click.option("--validation", default=0.1, show_default=True, help="Share of songs in the validation split.")
@click.option("--test", "test_share", default=0.1, show_default=True, help="Share of songs in the test split.")
@quiet_option
@json_option
def ingest(
    sources: tuple[Path, ...], out: Path, workers: int, allow_any_meter: bool,
    validation: float, test_share: float, quiet: bool, as_json: bool,
) -> None:
    """Read MIDI files, LPD-5 .npz songs and MuseGAN phrase files into a phrase store.

    SOURCES are files or folders (searched recursively for .mid, .midi, .kar, .npz). Songs are
    cut into non-overlapping 4-bar phrases on 4/4 bar lines; empty phrases are dropped. Songs
    are split into train/validation/test by content hash, so duplicates share a split. Run the
    same command again to resume an interrupted ingest: files already done are skipped.
    """
    from midivae.data.ingest import ingest as run_ingest
    from midivae.data.store import SplitConfig

    summary = run_ingest(
        sources, out, workers=workers, allow_any_meter=allow_any_meter,
        split=SplitConfig(validation=validation, test=test_share), progress=progress_enabled(quiet),
    )
    if as_json:
        echo_json({"store": str(out), **summary.as_dict()})
        return
    d = summary.as_dict()
    click.echo(f"store          {out}")
    click.echo(f"files read     {d['files_read']}" + (f"  (+{d['already_done']} already in the store)" if d["already_done"] else ""))
    click.echo(f"songs written  {d['songs_written']}  (+{d['duplicates']} duplicates recorded, no phrases)")
    click.echo(f"phrases        {d['phrases_written']}")
    click.echo(f"files skipped  {d['files_skipped']}")
    for reason, count in sorted(d["skipped"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  {count:6d}  {reason}")
    if d["sections_skipped_not_4_4"]:
        click.echo(f"sections not in 4/4 left out: {d['sections_skipped_not_4_4']}")
    if d["tempi_added"]:
        click.echo(f"tempi added    {d['tempi_added']}  (songs stored before the store kept their tempo)")
    click.echo(f"time           {d['seconds']:.1f} s")


@click.command()
@click.argument("store", type=click.Path(path_type=Path))
@json_option
def info(store: Path, as_json: bool) -> None:
    """Counts, split sizes, track usage and note density of a phrase store."""
    from midivae.data.info import store_info
    from midivae.data.store import PhraseStore

    with PhraseStore.open(store) as opened:
        result = store_info(opened)
    if as_json:
        echo_json(result.as_dict())
        return
    click.echo(f"store     {result.path}  ({result.size_bytes / 2**20:.1f} MiB)")
    click.echo(f"phrases   {result.phrases}")
    click.echo(f"songs     {result.songs}  (+{result.duplicate_songs} duplicates)")
    click.echo(f"sources   {result.sources}  ({sum(result.skipped_sources.values())} skipped)")
    click.echo(f"tempo     known for {result.songs_with_tempo} of {result.songs} songs"
               + (f" (median {result.median_tempo:g} BPM)" if result.median_tempo else "")
               + ("" if result.songs_with_tempo or not result.songs else
                  "; ingest the same files again to add them (the model's search reads them)"))
    for reason, count in result.skipped_sources.items():
        click.echo(f"  {count:6d}  {reason}")
    click.echo("split          songs  phrases")
    for split in result.split_songs:
        click.echo(f"  {split:<11}{result.split_songs[split]:7d}  {result.split_phrases[split]:7d}")
    click.echo("track     plays in  notes/bar")
    for name in result.track_usage:
        click.echo(f"  {name:<8}{result.track_usage[name]:8.1%}  {result.notes_per_bar[name]:9.2f}")
    click.echo(f"active cells  {result.active_cells:.3%} of 80,640 per phrase")


def _parse_bars(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = text.split(":")
        return int(a or 0), int(b) if b else 10**9
    except ValueError:
        raise click.BadParameter("expected A:B (bar numbers from 0, B excluded), e.g. 8:16") from None


@click.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="PNG path (default: SOURCE name + .png here).")
@click.option("--phrase", "phrase_index", type=int, help="Show only the N-th non-empty phrase (from 0).")
@click.option("--bars", help="Show bars A:B of the song (from 0, B excluded).")
@click.option("--row", type=int, help="With a phrase store as SOURCE: the store row to show.")
@click.option("--allow-any-meter", is_flag=True, help="Read files not in 4/4 too.")
def show(source: Path, out: Path | None, phrase_index: int | None, bars: str | None, row: int | None, allow_any_meter: bool) -> None:
    """Draw a pianoroll PNG of a song, a phrase, or a store row (one colour per track)."""
    import numpy as np

    from midivae.constants import STEPS_PER_BAR
    from midivae.data.store import PhraseStore
    from midivae.errors import MidiVaeError
    from midivae.io import read_lpd, read_midi
    from midivae.plot import plot_pianoroll
    from midivae.song import cut_phrases

    if source.is_dir():
        if row is None:
            raise click.UsageError("a phrase store needs --row N")
        with PhraseStore.open(source) as store:
            roll = store.phrases([row])[0]
            title = f"{store.song_ids([row])[0]} bar {int(store.bar_offsets([row])[0])}"
        default_name = f"{source.name}-row{row}.png"
    else:
        song = read_lpd(source) if source.suffix.lower() == ".npz" else read_midi(source, allow_any_meter=allow_any_meter)
        title = source.name
        roll = song.roll
        if phrase_index is not None:
            cut = cut_phrases(song)
            if not 0 <= phrase_index < len(cut):
                raise MidiVaeError(f"{source}: phrase {phrase_index} does not exist (the song has {len(cut)} non-empty phrases)")
            roll = cut.phrases[phrase_index]
            title += f" phrase {phrase_index} (bar {int(cut.bar_offsets[phrase_index])})"
        elif bars is not None:
            a, b = _parse_bars(bars)
            roll = roll[a * STEPS_PER_BAR : b * STEPS_PER_BAR]
            if not len(roll):
                raise MidiVaeError(f"{source}: bars {bars} are past the end of the song")
            title += f" bars {a}:{min(b, a + len(roll) // STEPS_PER_BAR)}"
        default_name = source.stem + (f"-phrase{phrase_index}" if phrase_index is not None else "") + ".png"
    path = plot_pianoroll(np.asarray(roll), out or Path(default_name), title=title)
    click.echo(str(path))


def register(main: click.Group) -> None:
    main.add_command(ingest)
    main.add_command(info)
    main.add_command(show)
