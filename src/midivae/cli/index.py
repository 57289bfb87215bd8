"""``midivae index build|add|remove|info`` and ``midivae search``: parse, call midivae.index, print."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from midivae.cli.common import echo_json, json_option, progress_enabled, quiet_option
from midivae.errors import VectorIndexError


def _encoder_loader(checkpoint: str | None):
    """A memoised loader: the model is loaded only when a command really needs it."""
    cache: list = []

    def load():
        if not cache:
            from midivae.index.encoders import resolve_encoder

            cache.append(resolve_encoder(checkpoint))
        return cache[0]

    return load


def _print_report(report, as_json: bool, verb: str) -> None:
    if as_json:
        echo_json({**asdict(report), "skipped_by_reason": report.skipped_by_reason()})
        return
    click.echo(f"{verb} {report.index}: {report.songs_added} songs, {report.phrases_added} phrases added"
               + (f", {report.songs_removed} songs removed" if report.songs_removed else "")
               + f", {len(report.skipped)} skipped")
    for reason, n in sorted(report.skipped_by_reason().items(), key=lambda kv: -kv[1]):
        click.echo(f"  skipped {n:5d}  {reason}")
    if report.songs_without_tempo:
        click.echo(f"note: {report.songs_without_tempo} songs have no known tempo (a store ingested before tempi were "
                   "kept?); the model searches them without it; re-ingest them for its full quality", err=True)


def _stored_checkpoint(index: str) -> str | None:
    from midivae.index import LatentIndex

    with LatentIndex.open(Path(index)) as ix:
        return ix.meta.get("checkpoint") or (ix.checkpoint_id if ix.checkpoint_id.startswith("builtin:") else None)


def register(main: click.Group) -> None:
    @main.group("index")
    def index_group() -> None:
        """Build and maintain a latent index of songs (a folder: FAISS files + SQLite catalogue)."""

    @index_group.command("build")
    @click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
                  help="Phrase store, MIDI / LPD .npz file, or folder of them (repeatable).")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Index folder to create.")
    @click.option("--checkpoint", default=None,
                  help="Model checkpoint (default: the shipped model; builtin:bar-profile for no model).")
    @click.option("--kind", type=click.Choice(["exact", "hnsw", "ivf"]), default="exact", show_default=True,
                  help="exact: flat scan; hnsw / ivf: approximate, for large collections.")
    @click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True,
                  help="Distance between search vectors (cosine: the model's search head is built for it).")
    @click.option("--force", is_flag=True, help="Replace an existing index at --out (atomically).")
    @quiet_option
    @json_option
    def build(data, out, checkpoint, kind, metric, force, quiet, as_json) -> None:
        """Encode every phrase of every song under --data into a new index."""
        from midivae.index import IndexSpec, build_index

        encoder = _encoder_loader(checkpoint)()
        report = build_index(list(data), out, encoder, IndexSpec(kind=kind, metric=metric),
                             checkpoint=checkpoint or "", overwrite=force, progress=progress_enabled(quiet))
        _print_report(report, as_json, "built")

    @index_group.command("add")
    @click.argument("index", type=click.Path(exists=True, file_okay=False))
    @click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
                  help="Phrase store, MIDI / LPD .npz file, or folder of them (repeatable); songs already in the "
                       "index are skipped.")
    @click.option("--checkpoint", default=None, help="Default: the checkpoint the index was built with.")
    @quiet_option
    @json_option
    def add(index, data, checkpoint, quiet, as_json) -> None:
        """Encode and add songs (refuses a checkpoint other than the index's)."""
        from midivae.index import add_to_index

        encoder = _encoder_loader(checkpoint or _stored_checkpoint(index))()
        report = add_to_index(index, list(data), encoder, progress=progress_enabled(quiet))
        _print_report(report, as_json, "updated")

    @index_group.command("remove")
    @click.argument("index", type=click.Path(exists=True, file_okay=False))
    @click.argument("song_ids", nargs=-1, required=True)
    @json_option
    def remove(index, song_ids, as_json) -> None:
        """Remove songs by id (all or nothing)."""
        from midivae.index import remove_from_index

        _print_report(remove_from_index(index, list(song_ids)), as_json, "updated")

    @index_group.command("info")
    @click.argument("index", type=click.Path(exists=True, file_okay=False))
    @json_option
    def info(index, as_json) -> None:
        """Counts, kind, metric and the checkpoint that encoded the index."""
        from midivae.index import LatentIndex

        with LatentIndex.open(Path(index)) as ix:
            data = asdict(ix.info())
        if as_json:
            echo_json(data)
            return
        width = max(map(len, data))
        for key, value in data.items():
            click.echo(f"{key:<{width}}  {value}")

    @main.command("search")
    @click.argument("query")
    @click.option("--index", "index", required=True, type=click.Path(exists=True, file_okay=False),
                  help="Index folder (midivae index build).")
    @click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000), help="Songs to list.")
    @click.option("--bars", default=None, help="Only query bars A:B (0-based, B excluded).")
    @click.option("--any-key", is_flag=True, help="Also try the 12 transpositions of the pitched tracks.")
    @click.option("--rule", type=click.Choice(["nearest", "mean"]), default="mean", show_default=True,
                  help="Song distance: the best phrase pair, or the mean over query phrases of the nearest "
                       "(a query of several phrases also weighs how well the song's tempo agrees, when the "
                       "index's model reads tempo).")
    @click.option("--no-verify", is_flag=True,
                  help="Skip the exact verify (near-tied nearest phrases re-ordered by their notes; an index "
                       "built before it keeps no notes and is searched without it anyway).")
    @click.option("--checkpoint", default=None, help="Default: the checkpoint the index was built with.")
    @click.option("--ef-search", type=click.IntRange(1, 100_000), default=None,
                  help="HNSW indexes: candidates kept per query (higher = better recall, slower) [as built].")
    @click.option("--nprobe", type=click.IntRange(1, 100_000), default=None,
                  help="IVF indexes: inverted lists probed per query [as built].")
    @json_option
    def search_cmd(query, index, k, bars, any_key, rule, no_verify, checkpoint, ef_search, nprobe, as_json) -> None:
        """Find the songs of INDEX most like QUERY (a MIDI file, an LPD .npz, or a song id in INDEX)."""
        from midivae.index import LatentIndex, search
        from midivae.index.search import parse_bars
        from midivae.verify import DEFAULT_VERIFY

        with LatentIndex.open(Path(index)) as ix:
            ckpt = checkpoint or ix.meta.get("checkpoint") or (
                ix.checkpoint_id if ix.checkpoint_id.startswith("builtin:") else None)
            if ef_search is not None or nprobe is not None:
                tune = getattr(ix.phrases, "tune", None)
                if tune is None:
                    raise VectorIndexError(f"{index}: this index backend has no search-time settings")
                tune(ef_search=ef_search, nprobe=nprobe)
            result = search(ix, query, _encoder_loader(ckpt), k=k, bars=parse_bars(bars), any_key=any_key, rule=rule,
                            verify=None if no_verify else DEFAULT_VERIFY)
        if as_json:
            echo_json(result.to_dict())
            return
        _print_table(result)


def _bars(first: int) -> str:
    from midivae.constants import BARS_PER_PHRASE

    return f"{first}-{first + BARS_PER_PHRASE - 1}"


def _print_table(result) -> None:
    excluded = f"; excluding {', '.join(result.excluded)}" if result.excluded else ""
    click.echo(f"query {result.query}: {result.n_query_phrases} phrases, rule {result.rule}"
               + (", any key" if result.any_key else "") + (", notes verified" if result.verified else "") + excluded)
    if not result.hits:
        click.echo("no results")
        return
    header = ("rank", "song", "distance", "key", "matched bars (query -> hit)")
    rows = [header]
    for hit in result.hits:
        shown = ", ".join(f"{_bars(m.query_bar)}->{_bars(m.hit_bar)}" for m in hit.matches[:3])
        more = f" (+{len(hit.matches) - 3})" if len(hit.matches) > 3 else ""
        name = hit.song_id + (" (same content)" if hit.same_content else "")
        rows.append((str(hit.rank), name, f"{hit.distance:.4f}", f"{hit.transpose:+d}", shown + more))
    columns = [0, 1, 2, 3, 4] if result.any_key else [0, 1, 2, 4]
    widths = {i: max(len(r[i]) for r in rows) for i in columns}
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i == 2 else r[i].ljust(widths[i]) for i in columns]
        click.echo("  ".join(cells).rstrip())
