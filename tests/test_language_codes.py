"""Language codes in recipes are checked against the labels of the fastText model that will use them:
an unknown code (`english`) would match no prediction and reject every record, so it stops the run
before anything is read, naming the key, the value and what was probably meant."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from filters.language import LanguageIdentifier, model_labels, suggest_language_code
from filters.model_files import default_lid_model_path
from manifests.recipe import RecipeError, load_recipe, parse_recipe
from pipelines.stages import heuristics, obelics_documents
from pipelines.stages.heuristics import HeuristicsConfig, LanguageRule

LID = str(default_lid_model_path())


def fails(data) -> str:
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    return str(err.value)


def heuristics_language(**language) -> dict:
    return {"name": "x", "stages": [{"heuristics": {"language": language}}]}


def obelics_languages(languages) -> dict:
    return {"name": "x", "input": {"kind": "document"}, "stages": [{"obelics_documents": {"languages": languages}}]}


def test_lid176_labels_are_read_from_the_model():
    labels = model_labels(LID)
    assert len(labels) == 176 and {"en", "de", "zh", "ceb", "als"} <= labels
    assert not any(label.startswith("__label__") for label in labels)


@pytest.mark.parametrize(("value", "meant"), [
    ("english", "en"), ("English", "en"), ("EN", "en"), ("__label__en", "en"), ("en-US", "en"), ("en_GB", "en"),
    ("eng", "en"), ("englsh", "en"), ("german", "de"), ("Deutsch", "de"), ("zh-Hans", "zh"), ("chinese", "zh"),
    ("portugese", "pt"), ("iw", "he"), ("nb", "no"), ("klingon", None), ("xx", None),
])
def test_suggestions(value, meant):
    assert suggest_language_code(value, model_labels(LID)) == meant


def test_unknown_heuristics_code_is_one_line_naming_key_value_and_suggestion():
    msg = fails(heuristics_language(allowed=["en", "english"]))
    assert ("stages.0.heuristics.language.allowed: 'english' is not a language code of the fastText model "
            "(did you mean 'en'?)") in msg.splitlines()[1]
    assert len(msg.splitlines()) == 2  # the header line and this problem, nothing else


def test_unknown_obelics_code_is_named_too():
    msg = fails(obelics_languages(["fr", "French"]))
    assert "stages.0.obelics_documents.languages: 'French' is not a language code" in msg and "'fr'?" in msg


def test_a_code_without_any_suggestion_lists_the_model_codes():
    msg = fails(heuristics_language(allowed=["klingon"]))
    assert "'klingon' is not a language code" in msg and "the model's codes: af, als, am," in msg


@pytest.mark.parametrize("codes", [["en"], ["en", "de", "zh", "ceb"]])
def test_known_codes_keep_working(codes):
    h = parse_recipe(heuristics_language(allowed=codes)).stages[0].config
    d = parse_recipe(obelics_languages(codes)).stages[0].config
    assert h.language.allowed == d.languages == tuple(codes)
    assert heuristics.preflight(h).models and obelics_documents.preflight(d) is not None


def test_no_codes_turns_the_document_rule_off_and_is_refused_for_captions():
    """obelics_documents.languages: [] is documented as the rule off; heuristics' language rule with
    no language allowed rejected every caption (the rule is left out instead)."""
    assert parse_recipe(obelics_languages([])).stages[0].config.languages == ()
    with pytest.raises(RecipeError, match="language.allowed: Tuple should have at least 1 item"):
        parse_recipe(heuristics_language(allowed=[]))


def test_codes_are_checked_against_the_model_the_recipe_names(tmp_path):
    """model_path (relative to the recipe) is the model whose labels decide; one that cannot be read
    when the recipe is parsed leaves the check, and the failure, to the stage's preflight."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(LID, models / "my-lid.ftz")
    recipe = tmp_path / "r.yaml"
    body = "name: x\nstages:\n  - heuristics:\n      language: {{model_path: {}, allowed: [{}]}}\n"
    recipe.write_text(body.format("models/my-lid.ftz", "de"))
    rule = load_recipe(recipe).stages[0].config.language
    assert (rule.model_path, rule.allowed) == (str(models / "my-lid.ftz"), ("de",))
    assert LanguageIdentifier(rule.model_path).labels == model_labels(LID)
    recipe.write_text(body.format("models/my-lid.ftz", "deutsch"))
    with pytest.raises(RecipeError, match=r"language.allowed: 'deutsch' is not a language code .*did you mean 'de'\?"):
        load_recipe(recipe)
    (models / "broken.bin").write_bytes(b"not a fastText model")
    recipe.write_text(body.format("models/broken.bin", "deutsch"))
    config = load_recipe(recipe).stages[0].config
    with pytest.raises(ValueError, match="broken.bin"):
        heuristics.preflight(config)


def test_preflight_checks_the_codes_again_against_the_model_it_loads():
    """Backstop for a config that skipped validation (or whose model was unreadable when parsed)."""
    config = HeuristicsConfig(language=LanguageRule.model_construct(enabled=True, model_path=None,
                                                                    allowed=("english",), min_score=0.0),
                              complexity={"enabled": False})
    with pytest.raises(ValueError, match=r"heuristics.language.allowed: 'english' .*did you mean 'en'\?"):
        heuristics.preflight(config)


def test_the_command_stops_before_reading_anything(tmp_path, pool_dir):
    recipe = tmp_path / "lang.yaml"
    recipe.write_text("name: lang\nstages:\n  - heuristics:\n      language: {allowed: [english]}\n")
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "curate", "lang.yaml", "-i",
                             f"{pool_dir}/shards/*.tar", "-o", "out"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    assert "stages.0.heuristics.language.allowed: 'english' is not a language code" in result.stderr
    assert "did you mean 'en'?" in result.stderr and not (tmp_path / "out").exists()
