"""What a runner on other machines (Dataflow, Flink, Spark) needs that a local one does not.

On the DirectRunner every worker shares the driver's disk: a recipe's `metaclip.metadata` resolved
to /home/me/vlcurate/manifests/wordlists/... opens in every worker. Dataflow's workers are other
machines running the container image, where that path does not exist (the image installs vlcurate
elsewhere), and the run would fail in every worker's setup after the job had started and been
paid for. So before building the pipeline for such a runner, every input, the output and every
file a stage's worker opens must be a URL the workers can reach (gs://, s3://, ...).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from manifests.recipe import Recipe
from pipelines.stages.catalog import config_keys

# Runners whose workers run on this machine (Beam's names, and the short forms its options accept)
LOCAL_RUNNERS = {"directrunner", "direct", "bundlebaseddirectrunner", "switchingdirectrunner", "fnapirunner",
                 "prismrunner", "prism", "interactiverunner"}


# Runners on other machines, by Beam's names (a dotted path to a runner class is taken as one too).
REMOTE_RUNNERS = {"dataflowrunner", "dataflow", "testdataflowrunner", "flinkrunner", "flink", "sparkrunner",
                  "spark", "portablerunner", "portable", "samzarunner", "jetrunner", "pythonrpcdirectrunner"}
_NAMES = ["DirectRunner", "PrismRunner", "InteractiveRunner", "DataflowRunner", "FlinkRunner", "SparkRunner",
          "PortableRunner"]


def unknown_runner(runner: Any) -> str | None:
    """A misspelt --runner was taken for a runner on other machines, and the message said so."""
    if not isinstance(runner, str) or "." in runner or runner.lower() in LOCAL_RUNNERS | REMOTE_RUNNERS:
        return None
    close = difflib.get_close_matches(runner, _NAMES, n=1, cutoff=0.6)
    return (f"--runner={runner} is not a Beam runner" + (f": did you mean {close[0]}?" if close else
            f" (e.g. {', '.join(_NAMES[:5])})"))


def runs_elsewhere(runner: Any) -> bool:
    name = runner if isinstance(runner, str) else getattr(runner, "__name__", type(runner).__name__)
    return bool(name) and name.lower() not in LOCAL_RUNNERS


def _local(value: Any) -> bool:
    return isinstance(value, str) and "://" not in value and os.path.exists(os.path.expanduser(value))


def local_paths(recipe: Recipe, input_pattern: str, output: str) -> list[str]:
    """`name: path` for the input, the output and every stage path key that is a local file."""
    found = [f"--input: {input_pattern}"] if "://" not in input_pattern else []
    if "://" not in output:
        found.append(f"--output: {output}")
    for entry in recipe.stages:
        values = entry.config.model_dump()
        for key in config_keys(type(entry.config)):
            if not key["type"].startswith("RecipePath"):
                continue
            value: Any = values
            for part in key["key"].split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if _local(value):
                found.append(f"{entry.name}.{key['key']}: {value}")
    return found


def remote_runner_problem(recipe: Recipe, input_pattern: str, output: str, runner: Any) -> str | None:
    """One line naming what the runner's workers could not open (or that it is no runner); None when
    all is reachable."""
    if problem := unknown_runner(runner):
        return problem
    if not runs_elsewhere(runner):
        return None
    local = local_paths(recipe, input_pattern, output)
    if not local:
        return None
    return (f"the {runner} runs workers on other machines, which cannot open local paths: {'; '.join(local)}. "
            "Copy them to a bucket (gs://, s3://) and give those URLs (models and files baked into the worker "
            "image may be given by their path in the image)")
