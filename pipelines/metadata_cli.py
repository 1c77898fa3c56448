"""`vlcurate metadata ...`: MetaCLIP metadata commands (registered on the main app by pipelines/cli.py)."""

from __future__ import annotations

import typer

metadata_app = typer.Typer(help="MetaCLIP metadata: the entries captions are matched against.",
                           no_args_is_help=True)


@metadata_app.command("build")
def metadata_build(
    out: str = typer.Argument(..., help="output JSON (a list of strings); OUT.counts.json is written beside it"),
    wordnet_dir: str = typer.Option("/usr/share/wordnet", "--wordnet-dir", help="WordNet 3.0 data.* files"),
    no_wordnet: bool = typer.Option(False, "--no-wordnet", help="build from the other sources alone"),
    min_zipf: float = typer.Option(3.0, "--min-zipf", help="wordfreq English unigrams at or above this Zipf value"),
    no_unigrams: bool = typer.Option(False, "--no-unigrams", help="leave out the wordfreq unigrams"),
    extra: list[str] = typer.Option([], "--extra", help="more entries: a JSON list or one per line (repeatable)"),
) -> None:
    """Build MetaCLIP-style metadata: WordNet synset lemmas, frequent unigrams, your own entry files.

    Example: vlcurate metadata build metadata.json --min-zipf 3.0 --extra bigrams.txt
    """
    from filters.metadata_sources import MetadataSourceError
    from pipelines.drivers.metadata import build_metadata

    try:
        summary = build_metadata(out, None if no_wordnet else wordnet_dir, None if no_unigrams else min_zipf, extra)
    except (MetadataSourceError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {summary['entries']:,} entries to {out}")
    for name, c in summary["sources"].items():
        typer.echo(f"  {name:<28} read {c['read']:>9,}  added {c['added']:>9,}")
