"""Recipe validation: bad recipes fail before anything runs, naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.recipe import RecipeError, load_recipe, parse_recipe

RECIPES = sorted((Path(__file__).parents[1] / "manifests" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path)
    first = "obelics_nodes" if recipe.input.kind == "document" else "heuristics"
    assert recipe.name == path.stem and recipe.stages[0].name == first


def test_datacomp_clipscore_is_l14_top_30_percent():
    recipe = load_recipe(Path(__file__).parents[1] / "manifests/recipes/datacomp_clipscore.yaml")
    clip = recipe.stages[1].config
    assert (clip.model.name, clip.model.pretrained, clip.top_fraction, clip.threshold) == ("ViT-L-14", "openai", 0.3, None)


def test_datacomp_basic_is_exactly_datacomp():
    h = load_recipe(Path(__file__).parents[1] / "manifests/recipes/datacomp_basic.yaml").stages[0].config
    assert (h.caption.min_words, h.caption.min_chars, h.caption.clean_html) == (3, 6, False)
    assert (h.language.allowed, h.language.min_score) == (("en",), 0.0)
    assert (h.image.min_side, h.image.max_aspect, h.image.use_original_size) == (200, 3.0, True)
    assert not (h.boilerplate.enabled or h.complexity.enabled or h.exact_dedup)


def fails(data) -> str:
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    return str(err.value)


def test_unknown_key_is_named_with_the_allowed_keys():
    msg = fails({"name": "x", "stages": [{"heuristics": {"language": {"alowed": ["en"]}}}]})
    assert "stages.0.heuristics.language.alowed: unknown key 'alowed'" in msg
    assert "allowed here: enabled, model_path, allowed, min_score" in msg
    assert "unknown key 'alowed': did you mean 'allowed'?" in msg
    # a key written one section too high is found in the section below, by its full path
    msg = fails({"name": "x", "stages": [{"heuristics": {"min_word": 2}}]})
    assert "did you mean 'stages.0.heuristics.caption.min_words'?" in msg


def test_unknown_top_level_key():
    assert "unknown key 'stage'" in fails({"name": "x", "stage": []})


def test_bad_value_names_key_and_allowed_values():
    msg = fails({"name": "x", "stages": [{"heuristics": {"image": {"allowed_formats": ["JPG"]}}}]})
    assert "stages.0.heuristics.image.allowed_formats.0" in msg and "'JPEG'" in msg and "'WEBP'" in msg


def test_out_of_range_value():
    msg = fails({"name": "x", "stages": [{"heuristics": {"image": {"max_aspect": 0.5}}}]})
    assert "stages.0.heuristics.image.max_aspect" in msg and "greater than or equal to 1" in msg


def test_unknown_stage_lists_the_known_ones_and_suggests_the_closest():
    msg = fails({"name": "x", "stages": [{"clipscor": {}}]})
    from pipelines.stages import registry

    assert f"unknown stage 'clipscor'; did you mean 'clipscore'? allowed: {', '.join(sorted(registry()))}" in msg
    assert "did you mean 'semantic_dedup'?" in fails({"name": "x", "stages": [{"semdedup": {}}]})
    assert "did you mean" not in fails({"name": "x", "stages": [{"xyz": {}}]})


def test_stage_listed_twice():
    assert "listed twice: heuristics" in fails({"name": "x", "stages": [{"heuristics": {}}, {"heuristics": {}}]})


def test_missing_name_and_non_mapping():
    assert "name: Field required" in fails({"stages": []})
    assert "a recipe is a mapping" in fails(["heuristics"])


def test_empty_stage_body_means_defaults():
    recipe = parse_recipe({"name": "x", "stages": [{"heuristics": None}]})
    assert recipe.stages[0].config.caption.min_words == 3


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize("key,value", [("min_side", "3"), ("min_side", True), ("min_side", 200.0), ("decode", "yes")])
def test_values_are_not_coerced(key, value):
    """"3", YAML's yes and 200.0 for an integer (or a string for a bool) are refused, naming the key."""
    msg = fails({"name": "x", "stages": [{"heuristics": {"image": {key: value}}}]})
    assert f"stages.0.heuristics.image.{key}" in msg and "values are not converted" in msg


def test_yaml_yes_for_an_integer_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nstages:\n  - heuristics:\n      image: {min_side: yes}\n")
    with pytest.raises(RecipeError, match="stages.0.heuristics.image.min_side: Input should be a valid integer, got True"):
        load_recipe(path)


def test_lists_fill_tuples_and_integers_fill_floats():
    recipe = parse_recipe({"name": "x", "stages": [{"heuristics": {"image": {"max_aspect": 3, "allowed_formats": ["PNG"]}}}]})
    image = recipe.stages[0].config.image
    assert (image.max_aspect, image.allowed_formats) == (3.0, ("PNG",))


def test_a_bad_boilerplate_regex_is_a_recipe_error():
    msg = fails({"name": "x", "stages": [{"heuristics": {"boilerplate": {"patterns": ["ok", "(unclosed"]}}}]})
    assert "stages.0.heuristics.boilerplate.patterns: pattern 1 '(unclosed' is not a valid regular expression" in msg


def test_exponent_floats_are_numbers_and_strings_stay_strings(tmp_path):
    """`5e-1` is a float in YAML 1.2, JSON and Python (PyYAML's YAML 1.1 made it the string '5e-1', which
    a float field refused); a caption-like string with digits, ints and other YAML 1.1 forms are unchanged."""
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ndescription: 1e5 reasons\nstages:\n  - heuristics:\n"
                    "      language: {min_score: 5e-1}\n      image: {min_side: 1_000, max_aspect: 1E1}\n"
                    "  - clipscore: {threshold: 2.5e-1}\n")
    recipe = load_recipe(path)
    heuristics, clip = recipe.stages[0].config, recipe.stages[1].config
    assert heuristics.language.min_score == 0.5 and isinstance(heuristics.language.min_score, float)
    assert heuristics.image.max_aspect == 10.0 and isinstance(heuristics.image.max_aspect, float)
    assert clip.threshold == 0.25
    assert heuristics.image.min_side == 1000 and type(heuristics.image.min_side) is int
    assert recipe.description == "1e5 reasons"
    path.write_text("name: x\nstages:\n  - heuristics:\n      image: {min_side: 1e2}\n")
    with pytest.raises(RecipeError, match=r"image.min_side: Input should be a valid integer, got 100.0"):
        load_recipe(path)  # an exponent makes a float, which an integer field refuses


@pytest.mark.parametrize("text, expected", [
    ("1e-4", 1e-4), ("5e-1", 0.5), ("1E3", 1000.0), ("-2.5e-3", -2.5e-3), ("+1e+2", 100.0), ("1.0e30", 1e30),
    ("1.5E3", 1500.0), ("-.5", -0.5), (".5e1", 5.0), ("1.0e+30", 1e30), ("0.001", 0.001), ("1.", 1.0),
    ("1_000.5", 1000.5), (".inf", float("inf")), ("-.Inf", float("-inf")),
    ("1", 1), ("-7", -7), ("1_000", 1000), ("010", 8), ("0x1F", 31), ("0b11", 3),  # YAML 1.1 ints, as before
    ("1e", "1e"), ("v1e2", "v1e2"), ("1.2.3", "1.2.3"), ("1e5 reasons", "1e5 reasons"), ("e5", "e5"),
    ("0o10", "0o10"), ("1e-4x", "1e-4x"), ('"1e-4"', "1e-4"), ("'1e-4'", "1e-4"), ("1e2.5", "1e2.5"),
])
def test_the_yaml_loader_reads_yaml_1_2_floats(text, expected):
    from manifests.yaml_numbers import load_yaml

    value = load_yaml(text)
    assert value == expected and type(value) is type(expected), (text, value)
    assert load_yaml(".nan") != load_yaml(".nan")  # NaN


def test_a_recipe_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(RecipeError, match="is a folder; give its YAML file"):
        load_recipe(tmp_path)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("kind", "stage", "shown"), [
    ("sample", {"heuristics": {"image": {"allowed_formats": []}}}, "allowed_formats: Tuple should have at least 1 item"),
    ("sample", {"heuristics": {"language": {"allowed": []}}}, "language.allowed: Tuple should have at least 1 item"),
    ("document", {"fetch_images": {"min_side": 500, "max_side": 100}}, "min_side 500 > max_side 100: nothing could pass"),
    ("document", {"obelics_nodes": {"min_words": 50, "max_words": 5}}, "min_words 50 > max_words 5"),
    ("document", {"obelics_documents": {"min_images": 3, "max_images": 1}}, "min_images 3 > max_images 1"),
])
def test_settings_that_would_reject_every_record_are_refused(kind, stage, shown):
    """They were accepted, and the run rejected everything it read."""
    with pytest.raises(RecipeError, match=shown):
        parse_recipe({"name": "t", "input": {"kind": kind}, "stages": [stage]})


def test_yaml_booleans_where_a_string_belongs_and_range_errors_show_the_value(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nstages:\n  - heuristics: {language: {allowed: [en, no]}}\n  - clipscore: {top_fraction: -0.3}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert 'got False (YAML reads no, yes, on and off as booleans: quote it, e.g. "no")' in str(err.value)
    assert "top_fraction: Input should be greater than 0, got -0.3" in str(err.value)
