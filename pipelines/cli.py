"""The `vlcurate` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import typer

from pipelines.cli_help import reflow_help
from pipelines.interrupts import interrupt_status, raise_on_termination
from pipelines.storage_errors import storage_failure
from pipelines.experiment.cli import experiment_app
from pipelines.metadata_cli import metadata_app
from pipelines.train_cli import EXTRA_ARGS, eval_command, train

app = typer.Typer(
    help="Curate web image-text data into webdataset shards on Apache Beam.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(experiment_app, name="experiment")


def _print_version(value: bool) -> None:
    if value:
        from filters.model_files import package_version

        typer.echo(f"vlcurate {package_version('vlcurate') or 'unknown (not installed)'}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print vlcurate's version and exit")) -> None:
    pass


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING, stream=sys.stderr)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger("vlcurate").setLevel(level)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command("sample-data")
def sample_data(
    out_dir: Path = typer.Argument(..., help="where to write shards/ and urls.parquet (web: crawl-NNNNN.warc.gz)"),
    n: int = typer.Option(400, "--n", min=1, help="number of records in the pool (web: fetches in the crawl)"),
    seed: int = typer.Option(0, "--seed", help="same seed, same bytes"),
    per_shard: int = typer.Option(100, "--per-shard", min=1, help="records per input shard (web: fetches per WARC)"),
    kind: str = typer.Option("pairs", "--kind", help="pairs: an img2dataset pool; web: a WARC crawl of news pages"),
) -> None:
    """Write a deterministic synthetic raw pool (img2dataset layout) that exercises every heuristic rule,
    or with --kind web a small crawl (gzipped WARC) for the OBELICS recipe.

    Example: vlcurate sample-data demo/pool --n 400 --seed 0
    Example: vlcurate sample-data demo/web --kind web --n 60
    """
    if kind == "web":
        from pipelines.drivers.sample_web import write_crawl

        summary = write_crawl(out_dir, n=n, seed=seed, per_file=per_shard)
        typer.echo(f"wrote {summary['records']} WARC records ({summary['fetches']} fetches) in {summary['files']} "
                   f"file(s) to {out_dir}; curate with manifests/recipes/obelics.yaml -i '{out_dir}/*.warc.gz'")
    elif kind == "pairs":
        from pipelines.drivers.sample_data import write_pool

        summary = write_pool(out_dir, n=n, seed=seed, per_shard=per_shard)
        typer.echo(f"wrote {summary['records']} records in {summary['shards']} shard(s) to {out_dir}/shards, "
                   f"URL list {out_dir}/urls.parquet")
    else:
        _fail(f"--kind {kind!r}: choose pairs or web")
    for name, count in sorted(summary["kinds"].items()):
        typer.echo(f"  {name:<24} {count}")
    if summary["removed"]:
        typer.echo(f"removed {summary['removed']} file(s) an earlier, larger sample-data run left in {out_dir}")


CURATE_OPTIONS = ["--input", "--output", "--overwrite", "--allow-private-networks", "--limit", "--dry-run",
                  "--fail-on-empty", "--storage-option", "--quiet", "--verbose", "--help"]
STORAGE_HELP = "fsspec option key=value for the input's and output's store, e.g. endpoint_url=... (repeatable)"


def _use_storage(items: list[str], *urls: str | None) -> None:
    """-S options for every remote URL the command reads or writes (one line if one is malformed)."""
    from manifests.storage import parse_storage_options, use_storage_options

    try:
        options = parse_storage_options(items)
    except ValueError as err:
        _fail(str(err))
    for url in urls:
        if url:
            use_storage_options(url, options)


@app.command(context_settings=EXTRA_ARGS)
def curate(
    ctx: typer.Context,
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. manifests/recipes/quickstart.yaml"),
    # Required, but checked after the unknown options: click would report a misspelt --inputs as a missing --input.
    input: str = typer.Option(None, "--input", "-i", show_default=False,
                              help="(required) glob of input files (any fsspec URL): .tar / .parquet pairs, or with "
                              "`input: {kind: document}` .warc(.gz) / .html / url+html .parquet / .jsonl"),
    output: str = typer.Option(None, "--output", "-o", show_default=False,
                               help="(required) run directory (any fsspec URL)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a previous run in --output"),
    allow_private_networks: bool = typer.Option(
        False, "--allow-private-networks",
        help="a download block and fetch_images may fetch loopback/private addresses too"),
    limit: int = typer.Option(None, "--limit", min=1, help="only the first N input records (in input file order; "
                              "with a download block, the first N URLs): a quick trial of a recipe"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check the recipe, inputs, models and output; print the "
                                 "plan; write nothing"),
    fail_on_empty: bool = typer.Option(False, "--fail-on-empty", help="exit non-zero when the run keeps nothing"),
    storage_option: list[str] = typer.Option([], "--storage-option", "-S", help=STORAGE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars, warnings and errors only (CI logs)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Run the recipe's stages over the input files; write shards, rejections, report.html and manifest.json.

    With a `download:` block in the recipe, --input is a URL list: it is downloaded into OUTPUT/raw/
    first (a rerun resumes an interrupted download), then curated.
    Other options go to Beam, e.g. --direct_running_mode=multi_processing --direct_num_workers=2
    or --runner=DataflowRunner ... (see README); an option neither vlcurate nor Beam knows is refused.

    Example: vlcurate curate manifests/recipes/quickstart.yaml -i 'pool/shards/*.tar' -o curated
    Example: vlcurate curate manifests/recipes/obelics.yaml -i 'crawl/*.warc.gz' -o documents --limit 500
    """
    from manifests.manifest import AccountingError
    from manifests.recipe import RecipeError, load_recipe
    from pipelines.drivers.beam_args import UnknownOptionError, check_beam_args
    from pipelines.drivers.curate import CurateError, curate as run_curate
    from pipelines.drivers.download import DownloadError
    from pipelines.drivers.funnel_table import print_summary
    from pipelines.io.url_lists import UrlListError

    _setup_logging(verbose, quiet)
    _use_storage(storage_option, input, output)
    try:
        check_beam_args(list(ctx.args), CURATE_OPTIONS)
        _require(input=input, output=output)
        parsed = load_recipe(recipe)
        if dry_run:
            from pipelines.drivers.plan import describe_plan

            typer.echo("\n".join(describe_plan(parsed, input, output, limit, beam_args=list(ctx.args),
                                                overwrite=overwrite)))
            return
        result = run_curate(parsed, input, output, beam_args=list(ctx.args), overwrite=overwrite,
                            allow_private_networks=True if allow_private_networks else None, limit=limit,
                            progress=not quiet and sys.stdout.isatty())  # rich draws on stdout
    except (RecipeError, CurateError, AccountingError, DownloadError, UrlListError, UnknownOptionError) as err:
        _fail(str(err))
    print_summary(result.manifest, result.manifest_url)
    _check_kept(result.manifest, fail_on_empty)


def _run_dir(path: str) -> str:
    """A run directory as given, or its manifest.json (what data.shards also takes): the directory."""
    path = path.rstrip("/")
    return path.removesuffix("/manifest.json") if path.endswith("/manifest.json") else path


def _require(**options: str | None) -> None:
    missing = [f"--{name} / -{name[0]}" for name, value in options.items() if value is None]
    if missing:
        _fail(f"missing option {missing[0]} (see --help)")


def _check_kept(manifest, fail_on_empty: bool) -> None:
    """A run that keeps nothing is almost always a mistake (a threshold, a language code): say so."""
    if manifest.counts.kept:
        return
    typer.secho(f"warning: the run kept none of its {manifest.counts.input:,} input records; see the funnel "
                "above and report.html for what removed them", fg=typer.colors.YELLOW, err=True)
    if fail_on_empty:
        raise typer.Exit(3)


@app.command()
def report(
    run: str = typer.Argument(..., help="a finished run directory (any fsspec URL)"),
    storage_option: list[str] = typer.Option([], "--storage-option", "-S", help=STORAGE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Rebuild RUN/report.html from the run's manifest, rejection table and shard parquets.

    Every run writes the page; this rebuilds it (e.g. after upgrading vlcurate) without running any
    stage again, and updates the manifest's entry for it.

    Example: vlcurate report demo/curated
    """
    from manifests.manifest import ManifestError
    from pipelines.report.build import ReportError, rebuild_report

    _setup_logging(verbose)
    _use_storage(storage_option, run)
    try:
        written = rebuild_report(_run_dir(run))
    except (ReportError, ManifestError) as err:
        _fail(str(err))
    typer.echo(f"wrote {written}")


@app.command()
def download(
    recipe: Path = typer.Argument(..., help="recipe YAML; its `download:` block sets img2dataset's options"),
    input: str = typer.Option(..., "--input", "-i", help="URL list: .parquet, .csv, .tsv or .txt (any fsspec URL)"),
    output: str = typer.Option(..., "--output", "-o", help="run directory: shards/, rejected/, manifest.json"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a previous download in --output"),
    allow_private_networks: bool = typer.Option(
        False, "--allow-private-networks", help="fetch loopback/private/link-local addresses (refused by default)"),
    limit: int = typer.Option(None, "--limit", min=1, help="only the list's first N URLs"),
    fail_on_empty: bool = typer.Option(False, "--fail-on-empty", help="exit non-zero when no image is kept"),
    storage_option: list[str] = typer.Option([], "--storage-option", "-S", help=STORAGE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar, warnings and errors only"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Fetch the images of a URL list with img2dataset into raw webdataset shards; every URL accounted for.

    Only http(s) URLs to public addresses are fetched. A rerun into the same --output resumes an
    interrupted download, skipping finished shards. Curate the result with
    `vlcurate curate RECIPE -i 'OUTPUT/shards/*.tar' ...`.

    Example: vlcurate download manifests/recipes/download_quickstart.yaml -i demo/pool/urls.parquet -o raw
    """
    from manifests.manifest import AccountingError
    from manifests.recipe import RecipeError, load_recipe
    from pipelines.drivers.download import DownloadError, download as run_download
    from pipelines.drivers.funnel_table import print_summary
    from pipelines.io.url_lists import UrlListError

    _setup_logging(verbose, quiet)
    _use_storage(storage_option, input, output)
    try:
        parsed = load_recipe(recipe)
        if parsed.download is None:
            logging.getLogger("vlcurate").warning("%s has no download block: img2dataset defaults apply", recipe)
        if parsed.stages:
            logging.getLogger("vlcurate").info("download runs only the download block; `curate` runs the stages")
        result = run_download(parsed, input, output, overwrite=overwrite,
                              allow_private_networks=True if allow_private_networks else None, limit=limit,
                              progress=not quiet and sys.stderr.isatty())
    except (RecipeError, DownloadError, AccountingError, UrlListError) as err:
        _fail(str(err))
    print_summary(result.manifest, result.manifest_url)
    _check_kept(result.manifest, fail_on_empty)


# `vlcurate metadata build` lives in pipelines/metadata_cli.py; registered here to keep the commands' order.
app.add_typer(metadata_app, name="metadata")


# The trainer's commands live in pipelines/train_cli.py; registered here to keep the commands' order.
app.command(context_settings=EXTRA_ARGS)(train)
app.command("eval", context_settings=EXTRA_ARGS)(eval_command)


@app.command()
def stages(as_json: bool = typer.Option(False, "--json", help="machine-readable: a JSON list of stages")) -> None:
    """List every stage a recipe can use: record kinds, annotations required and provided, rejection
    reasons, and every config key with its type and default.

    Example: vlcurate stages
    """
    import json

    from pipelines.stages.catalog import catalog, catalog_text

    typer.echo(json.dumps(catalog(), indent=2, default=str) if as_json else catalog_text())


@app.command()
def verify(
    root: str = typer.Argument(..., help="a run directory with manifest.json (any fsspec URL: local, s3://, gs://)"),
    deep: bool = typer.Option(False, "--deep", help="also decode every image of every shard"),
    storage_option: list[str] = typer.Option([], "--storage-option", "-S",
                                             help="fsspec option key=value for ROOT's store, e.g. endpoint_url=..."),
) -> None:
    """Re-hash every shard and rejection file against manifest.json; count each shard's records;
    report files missing and files present but not listed. Works on published (remote) sets.

    Example: vlcurate verify demo/curated
    Example: vlcurate verify s3://bucket/curated -S endpoint_url=http://127.0.0.1:9000
    """
    from manifests.manifest import read_manifest
    from manifests.storage import parse_storage_options, use_storage_options
    from manifests.verify import verify_dataset
    from pipelines.drivers.funnel_table import kept_text
    from pipelines.drivers.publish import one_line

    root = _run_dir(root)
    try:
        use_storage_options(root, parse_storage_options(storage_option))
    except ValueError as err:
        _fail(str(err))
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, NotADirectoryError):
        import fsspec

        if not fsspec.core.url_to_fs(root)[0].exists(fsspec.core.url_to_fs(root)[1]):
            _fail(f"{root} does not exist")
        _fail(f"{root} has no manifest.json: the run did not complete, or this is not a run directory")
    except Exception as err:  # a store that refuses us: one line, no secrets
        _fail(one_line(err, root))
    try:
        problems = verify_dataset(root, deep=deep)
    except Exception as err:
        _fail(one_line(err, root))
    for problem in problems:
        typer.secho(problem, fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(manifest.shards)} shard(s), {kept_text(manifest)}, "
               f"{len(manifest.rejected)} rejection file(s) match {root}/manifest.json")


@app.command()
def publish(
    run: str = typer.Argument(..., help="a finished run directory (with manifest.json)"),
    dest: str = typer.Argument(..., help="where to publish it: any fsspec URL (s3://bucket/set, gs://..., file://...)"),
    replace: bool = typer.Option(False, "--replace", help="publish a new version over an existing set (the old "
                                 "version is copied whole to DEST/_versions/<its created time>/ first)"),
    storage_option: list[str] = typer.Option([], "--storage-option", "-S",
                                             help="fsspec option key=value for DEST's store, and RUN's when it is "
                                             "remote too (endpoint_url=..., key=..., ...); credentials also come "
                                             "from the standard chains"),
    threads: int = typer.Option(8, "--threads", min=1, help="parallel uploads"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars, warnings and errors only (CI logs)"),
) -> None:
    """Copy a finished run to object storage: verified first, data files in parallel (resumable: what is
    already there with the same size and sha256 is skipped), manifest.json last and create-only.

    Example: vlcurate publish demo/curated s3://my-bucket/datasets/curated
    """
    from manifests.storage import parse_storage_options
    from pipelines.drivers.publish import PublishError, publish as run_publish

    _setup_logging(False, quiet)
    try:
        result = run_publish(_run_dir(run), dest, replace=replace, storage_options=parse_storage_options(storage_option),
                             threads=threads, progress=not quiet and sys.stderr.isatty())  # tqdm draws on stderr
    except (PublishError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"published {len(result.uploaded)} file(s), {result.bytes_uploaded / 1e6:.1f} MB "
               f"({len(result.skipped)} already there); manifest: {result.manifest_url}"
               + (f"; the previous version is kept in {dest.rstrip('/')}/{result.replaced}" if result.replaced else ""))


reflow_help(app)


def main() -> None:
    # img2dataset (used by later stages) phones home for albumentations updates on import.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    verbose = "-v" in sys.argv or "--verbose" in sys.argv
    if not verbose:
        # Beam logs each failed bundle attempt's traceback before raising the last one: for a full
        # disk that was 200 lines before the one that says so.
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    raise_on_termination()
    try:
        app()
    except SystemExit as done:
        if done.code == 128 + signal.SIGINT:  # typer's answer to a KeyboardInterrupt: silent
            typer.secho("interrupted (Ctrl-C)", fg=typer.colors.YELLOW, err=True)
        raise
    except BaseException as err:  # noqa: BLE001: interrupts and storage failures are one line; the rest is raised
        if (stopped := interrupt_status(err)) is not None and not verbose:
            what, status = stopped
            typer.secho(f"interrupted ({what})", fg=typer.colors.YELLOW, err=True)
            sys.exit(status)
        line = storage_failure(err) if isinstance(err, Exception) else None
        if line is None or verbose:  # -v: the whole traceback, whatever it is
            raise
        typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
