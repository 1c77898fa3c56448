"""`vlcurate experiment ...`: the experiment commands (registered on the main app by pipelines/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

experiment_app = typer.Typer(help="Experiments that show what curation buys.", no_args_is_help=True)


@experiment_app.command("mini-datacomp")
def mini_datacomp(
    out: Path = typer.Argument(..., help="experiment directory: pool/, heldout/, runs/, train/, results.json, index.html"),
    scale: str = typer.Option("default", "--scale", help="tiny (a smoke run), default (2 CPU cores, < 30 min), large"),
    seeds: int = typer.Option(3, "--seeds", min=1, help="training seeds per recipe"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (the filtering CLIP, model stages, training)"),
    seed: int = typer.Option(0, "--seed", help="the pool's, held-out set's and recipes' seed"),
    recipes: str = typer.Option("", "--recipes", help="comma-separated subset of raw,basic,clipscore,tmars,"
                                "semdedup,metaclip (default: all)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="warnings and errors only; the results still print"),
    overwrite: bool = typer.Option(False, "--overwrite", help="OUT holds an earlier experiment: run again there"),
) -> None:
    """A mini DataComp: generate a pool with known noise, train our own filtering CLIP, curate the pool
    with six recipes, train the same captioner on each for the same samples seen, evaluate on a
    held-out set; writes OUT/results.json and OUT/index.html.

    Example: vlcurate experiment mini-datacomp runs/mini --seeds 3
    """
    from pipelines.cli import _fail, _setup_logging
    from pipelines.experiment.recipes import RECIPE_NAMES
    from pipelines.experiment.run import SCALES, ExperimentError, run_experiment

    _setup_logging(verbose, quiet)
    only = [r.strip() for r in recipes.split(",") if r.strip()]
    if set(only) - set(RECIPE_NAMES):
        _fail(f"--recipes: unknown {sorted(set(only) - set(RECIPE_NAMES))}; choose from {', '.join(RECIPE_NAMES)}")
    if scale not in SCALES:
        _fail(f"--scale {scale!r}: one of {', '.join(SCALES)}")
    if device not in ("cpu", "cuda"):
        _fail(f"--device {device!r}: cpu or cuda")
    try:
        results = run_experiment(out, scale, seeds, device, seed, only or None, overwrite=overwrite)
    except ExperimentError as err:
        _fail(str(err))
    typer.echo(results["summary"])
    for name, recipe in results["recipes"].items():
        shown = ", ".join(f"{m} {sum(v) / len(v):.4f}" for m, v in recipe["metrics"].items() if v)
        typer.echo(f"  {name:<10} kept {recipe['samples_kept']:>7,}  {shown}")
    typer.echo(f"results: {out}/results.json, {out}/index.html")
