"""`vlcurate curate --dry-run`: everything a run checks before it starts, and nothing it writes.

The recipe is validated (it already is, by loading), the input glob resolved (with a download block:
the URL list found and the distributor's package importable), each stage's preflight
run (model files found and hashed, tags resolved), and the output directory inspected; the plan
printed says which stages run in which order on which record kinds, with which models, on which
device, and what the run would do to the output directory.
"""

from __future__ import annotations

from typing import Any

from manifests.recipe import Recipe, output_kind
from pipelines.io.run_dir import RunDirState


def _device(config: Any) -> str:
    """Where a stage's models run: the `device` of its config or of its model's, else the CPU."""
    for holder in (config, getattr(config, "model", None)):
        device = getattr(holder, "device", None)
        if isinstance(device, str):
            return device
    return "cpu"


def describe_plan(recipe: Recipe, input_pattern: str, output: str, limit: int | None = None,
                  beam_args: list[str] | None = None, overwrite: bool = False) -> list[str]:
    """The plan's lines; CurateError where the run itself would refuse (exit 2 from the CLI as well)."""
    from apache_beam.options.pipeline_options import StandardOptions

    from pipelines.drivers.curate import (RAW_DIR, CurateError, expand_inputs, output_problem, output_state,
                                          pipeline_options, preflight_stages, refuse_inputs_inside_output,
                                          resumable)
    from pipelines.drivers.remote_runner import remote_runner_problem

    runner = pipeline_options(beam_args).view_as(StandardOptions).runner
    if problem := remote_runner_problem(recipe, input_pattern, output, runner):  # as the run would refuse it
        raise CurateError(problem)

    lines = [f"recipe {recipe.name!r}: {recipe.input.kind} records in, {output_kind(recipe)} records out"]
    if recipe.download is not None:
        from pipelines.drivers.download import check_download

        check_download(recipe.download, input_pattern)  # as a run would: the list is there, the distributor imports
        lines.append(f"download: the URL list {input_pattern} is fetched into {output}/{RAW_DIR}/ first "
                     f"({recipe.download.processes} process(es) x {recipe.download.threads} threads)")
    else:
        paths = expand_inputs(input_pattern, recipe.input.kind)
        refuse_inputs_inside_output(paths, output)
        lines.append(f"inputs: {len(paths):,} file(s) matching {input_pattern!r} (first: {paths[0]})")
    if limit is not None:
        lines.append(f"limit: only the first {limit:,} records, in input file order")
    checked = preflight_stages(recipe)
    models: dict[str, list[dict]] = {}
    for model in checked.models:
        models.setdefault(model.get("stage"), []).append(model)
    kind = recipe.input.kind
    lines.append("stages:")
    for i, entry in enumerate(recipe.stages, 1):
        spec = entry.spec
        arrow = kind if spec.produces == kind else f"{kind} -> {spec.produces}"
        line = f"  {i}. {entry.name} [{arrow}]"
        if spec.requires:
            line += f" needs {', '.join(spec.requires)};"
        provided = spec.provided(entry.config)
        if provided:
            line += f" adds {', '.join(provided)}"
        lines.append(line)
        for model in models.get(entry.name, []):
            name = model.get("name") or model.get("model") or model.get("path") or "model"
            digest = str(model.get("sha256") or "")[:12]
            lines.append(f"     model {name}{f' (sha256 {digest}...)' if digest else ''} on {_device(entry.config)}")
        kind = spec.produces
    for line in checked.deferred:
        lines.append(f"  deferred to the workers: {line}")
    state = output_state(output)
    if problem := output_problem(state, output, overwrite, resumable(recipe)):
        raise CurateError(problem)
    lines.append({RunDirState.FRESH: f"output {output}: new or empty; would be written",
                  RunDirState.INTERRUPTED: f"output {output}: holds an interrupted run; "
                                           + ("replaced (--overwrite)" if overwrite else "what its stages keep is kept"),
                  RunDirState.COMPLETE: f"output {output}: holds a finished run; replaced (--overwrite)"}[state])
    lines.append("dry run: nothing was written")
    return lines
