"""The stage registry: every stage is one declared unit, discovered, and described by `vlcurate stages`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from manifests.recipe import RecipeError, StageEntry, parse_recipe
from manifests.schema import Strict
from pipelines.drivers.curate import CurateError, preflight_stages
from pipelines.stages import registry
from pipelines.stages.spec import StageSpec

ROOT = Path(__file__).parents[1]
SHIPPED = {"heuristics", "clipscore", "tmars", "semantic_dedup", "metaclip"}


def test_every_stage_module_declares_a_complete_spec():
    specs = registry()
    assert SHIPPED <= set(specs)
    for name, spec in specs.items():
        assert isinstance(spec, StageSpec) and spec.name == name and spec.summary
        assert issubclass(spec.config, Strict) and spec.accepts and spec.produces and (spec.reasons or spec.edits)
        assert name in StageEntry.model_fields  # the recipe is assembled from the registry


def test_requirements_are_resolved_from_declarations(tiny_clip):
    # semantic_dedup requires what clipscore provides; the order matters, not a special case.
    with pytest.raises(RecipeError, match="stages.0.semantic_dedup: semantic_dedup needs clip_image_embedding"):
        parse_recipe({"name": "t", "stages": [{"semantic_dedup": {}}, {"clipscore": {"model": tiny_clip}}]})
    # tmars with a model provides embeddings too, so dedup may follow it directly.
    ok = parse_recipe({"name": "t", "stages": [{"tmars": {"model": tiny_clip}}, {"semantic_dedup": {}}]})
    assert [e.name for e in ok.stages] == ["tmars", "semantic_dedup"]
    with pytest.raises(RecipeError, match="semantic_dedup needs clip_image_embedding"):
        parse_recipe({"name": "t", "stages": [{"tmars": {"max_text_fraction": 0.3}}, {"semantic_dedup": {}}]})


def test_a_cuda_recipe_validates_on_a_cpu_machine(tiny_clip):
    """Preflight hashes the weights and checks them against the architecture on the meta device;
    building the model on cuda is left to the workers, and said so."""
    import torch

    recipe = parse_recipe({"name": "t", "stages": [
        {"clipscore": {"model": {**tiny_clip, "device": "cuda", "precision": "bf16"}}},
        {"tmars": {"top_fraction": 0.5}}]})
    checked = preflight_stages(recipe)
    clip = [m for m in checked.models if m["stage"] == "clipscore"]
    assert len(clip) == 1 and len(clip[0]["sha256"]) == 64 and clip[0]["device"] == "cuda"
    assert any("clipscore: building vlcurate-tiny-clip on cuda happens on the workers" in d for d in checked.deferred)
    assert any(d.startswith("tmars: building") for d in checked.deferred)
    assert not torch.cuda.is_initialized()


def test_preflight_refuses_weights_of_another_architecture(tiny_clip, tmp_path):
    import torch

    from tests.tiny_clip import TINY_CONFIG, write_clip_checkpoint

    wider = {**TINY_CONFIG, "embed_dim": 48}
    other = write_clip_checkpoint(tmp_path, name="vlcurate-wider-clip", config=wider)
    recipe = parse_recipe({"name": "t", "stages": [{"clipscore": {"model": {**tiny_clip, "pretrained": other["pretrained"]}}}]})
    with pytest.raises(CurateError, match="does not fit the architecture vlcurate-tiny-clip"):
        preflight_stages(recipe)
    # files that are no checkpoint at all: one line each (tracebacks, or a bare "Aborted." for an empty one)
    torch.save([1, 2, 3], tmp_path / "a_list.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    for name, problem in [("a_list.pt", r"cannot be loaded as vlcurate-tiny-clip weights \(AttributeError"),
                          ("text.pt", "is not a checkpoint of tensors"), ("empty.pt", "is empty or cut short"),
                          ("garbage.safetensors", r"cannot be loaded as .* \(SafetensorError")]:
        bad = parse_recipe({"name": "t", "stages": [{"clipscore": {"model": {
            **tiny_clip, "pretrained": str(tmp_path / name)}}}]})
        with pytest.raises(CurateError, match=problem) as caught:
            preflight_stages(bad)
        assert "\n" not in str(caught.value) and "weights_only` set to `False" not in str(caught.value)


def test_vlcurate_stages_lists_every_stage_with_its_keys():
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipelines.cli", "stages", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    text = run()
    assert text.returncode == 0, text.stderr
    for name in SHIPPED:
        assert f"\n{name}: " in f"\n{text.stdout}"
    assert "image.min_side" in text.stdout and "semantic_dedup" in text.stdout and "requires  clip_image_embedding" in text.stdout
    listed = json.loads(run("--json").stdout)
    heuristics = next(s for s in listed if s["name"] == "heuristics")
    min_side = next(k for k in heuristics["config"] if k["key"] == "image.min_side")
    assert (min_side["type"], min_side["default"]) == ("int | None", 200)
    metaclip = next(s for s in listed if s["name"] == "metaclip")
    assert next(k for k in metaclip["config"] if k["key"] == "metadata")["required"] is True


def test_filters_are_framework_free():
    """filters/ holds pure per-record logic: no module there imports Beam or pipelines (AST, not grep)."""
    import ast

    for path in sorted((ROOT / "filters").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("apache_beam", "pipelines")), f"{path.name} imports {name}"
