"""`vlcurate train` and `vlcurate eval`: the trainer's commands (registered on the main app by pipelines/cli.py)."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer

# --section.key=value overrides of the training config arrive as extra arguments.
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
TRAIN_OPTIONS = ["--resume", "--overwrite", "--quiet", "--verbose", "--help"]
EVAL_OPTIONS = ["--checkpoint", "--batches", "--beams", "--out", "--quiet", "--verbose", "--help"]


def _misspelt_option(args: list[str], own: list[str]) -> str | None:
    """An extra argument that is not an override but close to one of the command's own options (--resum,
    --beam=3). A name=value far from them is left to the config's own suggestion (--steps=100 ->
    optim.steps), which a loose match here would hide behind `did you mean --help?`."""
    for arg in args:
        name, has_value = arg.split("=", 1)[0], "=" in arg
        if arg.startswith("--") and "." not in name:
            close = difflib.get_close_matches(name, own, n=1, cutoff=0.8 if has_value else 0.6)
            if close:
                return f"unknown option {name}: did you mean {close[0]}?"
    return None


def _config(ctx: typer.Context, path: Path, own_options: list[str], quiet: bool, verbose: bool):
    """What train and eval do first: logging, a misspelt option of their own named, bars off with
    --quiet, the config with its --section.key=value overrides; any problem is one line."""
    from pipelines.cli import _fail, _setup_logging

    _setup_logging(verbose)
    from trainers.config import ConfigError, load_config
    from trainers.llm import silence_progress_bars

    if (problem := _misspelt_option(ctx.args, own_options)) is not None:
        _fail(problem)
    if quiet:
        silence_progress_bars()
    try:
        return load_config(path, ctx.args)
    except ConfigError as err:
        _fail(str(err))


def train(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="training config YAML (trainers/config.py documents every key)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in run.out_dir"),
    overwrite: bool = typer.Option(False, "--overwrite", help="run.out_dir holds an earlier run: delete what the "
                                   "trainer wrote there (checkpoints, metrics.jsonl, eval, tensorboard; nothing "
                                   "else) and start again"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar (CI logs): a log line every "
                                                            "run.log_every steps with steps/s and ETA"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Train an adapter VLM on curated shards; extra --section.key=value arguments override the YAML.

    A run.out_dir that already holds a run (metrics.jsonl, checkpoints) is refused unless --resume
    or --overwrite is given.

    Example: vlcurate train trainers/configs/smoke_smollm2.yaml --optim.steps=200 --run.out_dir=runs/smoke
    (under torchrun for DDP: torchrun --nproc_per_node=2 -m pipelines.cli train CONFIG.yaml)
    """
    from pipelines.cli import _fail

    cfg = _config(ctx, config, TRAIN_OPTIONS, quiet, verbose)
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.data import DataError, one_line
    from trainers.run_dir import RunDirError
    from trainers.train import TrainingError, train as run_training

    try:
        last = run_training(cfg, resume=resume, overwrite=overwrite, progress=not quiet)
    except DataError as err:  # raised in a DataLoader worker it carries the worker's traceback
        _fail(one_line(err))
    except (ConfigError, FileNotFoundError, CheckpointError, TrainingError, RunDirError) as err:
        _fail(str(err))
    typer.echo(f"done: step {last.get('step')} loss {last.get('loss', float('nan')):.4f}; "
               f"checkpoints in {cfg.run.out_dir}/checkpoints")


def eval_command(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="the training config YAML of the run to evaluate"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="a checkpoint directory (default: the latest)"),
    batches: int = typer.Option(4, "--batches", min=1, help="batches of data.batch_size samples to score"),
    beams: int = typer.Option(1, "--beams", min=1, help="1: greedy decoding; more: beam search"),
    out: str = typer.Option(None, "--out", help="output directory (default: RUN/eval/CHECKPOINT)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar (CI logs)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
) -> None:
    """Loss, generated captions and CIDEr-D on the held-out shards (run.eval_shards); writes
    scores.json and index.html: one self-contained page with the run's config, its loss curves,
    CIDEr-D over the steps evaluated so far (RUN/eval/history.jsonl) and captions beside their images.

    Without run.eval_shards (or when it shares shards with data.shards) the scores are on training
    data: eval still runs, but says so in a warning, in scores.json ("split": "training data",
    train_loss instead of val_loss) and on the page. Stage-2 runs caption through the frozen LLM; a
    stage-1 (run.stage: captioner) run captions with its own tiny LM.

    Example: vlcurate eval runs/tiny.yaml --beams 3 --run.eval_shards='heldout/shards/*.tar'
    """
    from pipelines.cli import _fail

    cfg = _config(ctx, config, EVAL_OPTIONS, quiet, verbose)
    from trainers.checkpoint import CheckpointError
    from trainers.config import ConfigError
    from trainers.data import DataError, one_line
    from trainers.evaluate import evaluate

    try:
        result = evaluate(cfg, checkpoint, batches, beams, out, progress=not quiet)
    except DataError as err:
        _fail(one_line(err))
    except (ConfigError, FileNotFoundError, ValueError, CheckpointError) as err:
        _fail(str(err))
    if result["split"] == "validation":
        typer.echo(f"validation loss {result['val_loss']:.4f}, CIDEr-D {result['cider_d']:.3f} on "
                   f"{result['samples']} held-out samples")
    else:  # the warning itself was logged when the split was chosen, before the models loaded
        typer.echo(f"TRAINING-DATA loss {result['train_loss']:.4f}, CIDEr-D {result['cider_d']:.3f} on "
                   f"{result['samples']} training samples (not held out)")
