"""Sequence lengths are checked before training, in one line that names real config keys and the fix
(the smoke config with adapter.kind: vadapter used to die in its first forward pass with a traceback),
and every config key a trainer message names exists in trainers/config.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from manifests.schema import unwrap_optional
from tests.test_trainer_loop import _config, setup  # noqa: F401  (the module's fixture)
from trainers.config import ConfigError, TrainConfig, load_config

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "trainers" / "configs" / "smoke_smollm2.yaml"
# A dotted key of the trainer config, as messages write it (not a file name such as trainers/data.py).
KEY = re.compile(r"(?<![\w/.\-])(?:" + "|".join(TrainConfig.model_fields) + r")\.[a-z_]+(?:\.[a-z_]+)*")


def resolves(dotted: str) -> bool:
    model: object = TrainConfig
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = unwrap_optional(model.model_fields[part].annotation)
    return depth == len(parts) - 1


def keys_in(text: str) -> set[str]:
    return set(KEY.findall(text))


def test_the_smoke_config_with_vadapter_fails_at_load_in_one_line_naming_the_fix():
    overrides = ["--llm.path=/nowhere", "--adapter.kind=vadapter", "--adapter.tiny_lm.max_len=128"]
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, overrides)
    text = str(err.value)
    assert "\n" not in text
    assert ("adapter.kind: vadapter feeds its tiny LM adapter.queries=256 visual queries, more than its "
            "adapter.tiny_lm.max_len=128 positions: set adapter.queries <= 128 or adapter.tiny_lm.max_len >= 256"
            == text)
    assert keys_in(text) and all(resolves(k) for k in keys_in(text)), keys_in(text)
    # The CLI prints that line and exits 2, before loading any model (no traceback).
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", str(SMOKE), *overrides], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {text}"
    # The defaults fit now: the command (smoke config, adapter.kind: vadapter) loads.
    config = load_config(SMOKE, ["--llm.path=/nowhere", "--adapter.kind=vadapter"])
    assert config.adapter.queries <= config.adapter.tiny_lm.max_len


def test_stage_one_counts_visual_and_caption_tokens_and_the_boundary_runs(setup):  # noqa: F811
    from trainers.build import build_model
    from trainers.tasks import Record, build_task

    tiny = {"width": 32, "layers": 1, "heads": 4, "max_len": 19}
    path = _config(setup, "lengths1", run__stage="captioner", adapter__kind="vadapter", adapter__queries=8,
                   adapter__tiny_lm=tiny)  # data.max_caption_tokens: 12
    with pytest.raises(ConfigError, match=re.escape(
            "run.stage: captioner feeds the tiny LM adapter.queries=8 visual tokens + data.max_caption_tokens=12 "
            "caption tokens = 20, more than its adapter.tiny_lm.max_len=19 positions: lower adapter.queries or "
            "data.max_caption_tokens (by 1 together), or set adapter.tiny_lm.max_len >= 20")):
        load_config(path)
    config = load_config(path, ["--adapter.tiny_lm.max_len=20"])  # exactly enough
    model, _, tokenizer, _ = build_model(config)
    task = build_task(config, tokenizer, preprocess=lambda image: image)
    long = " ".join(["a red circle on a blue background"] * 4)  # truncated to 12 tokens
    batch = task.collate([task.encode(Record("k", [torch.randn(3, 64, 64)], long, []))])
    assert int(batch.attention_mask.sum()) == 12
    assert model(batch).isfinite()  # 8 + 12 = 20 positions: runs
    assert len(model.generate(task.prompts(batch.pixels), 12, eos_id=-1)[0]) == 12  # generation fits too


def test_the_llm_length_is_checked_at_build_before_any_step(setup, tmp_path):  # noqa: F811
    from tests.tiny_llm import write_tiny_llm
    from trainers.build import build_model
    from trainers.tasks import Record, build_task
    from trainers.train import train

    llm = write_tiny_llm(tmp_path / "llm24", max_positions=24)
    config = load_config(_config(setup, "lengths2", llm__path=llm))  # mlp: 16 patch tokens of the tiny ViT
    expected = ("the LLM reads 5 prompt tokens (data.prompt) + 16 visual tokens (one per patch of vision.name "
                "vlcurate-tiny-clip, all kept by adapter.kind: mlp) + up to 12 caption tokens "
                "(data.max_caption_tokens) = 33, more than the 24 positions of the model at llm.path: use "
                "adapter.kind: perceiver or vadapter with adapter.queries <= 7, or lower data.max_caption_tokens "
                "or shorten data.prompt")
    with pytest.raises(ConfigError) as err:
        train(config)
    assert str(err.value) == expected
    assert all(resolves(k) for k in keys_in(expected)), keys_in(expected)
    assert not (Path(config.run.out_dir) / "metrics.jsonl").exists()  # refused before the first step
    # The fix the message names fits exactly: 5 + 7 + 12 = 24 positions, in training and in generation.
    fixed = load_config(_config(setup, "lengths3", llm__path=llm, adapter__kind="perceiver", adapter__queries=7,
                                adapter__width=32, adapter__layers=1, adapter__heads=4))
    model, _, tokenizer, _ = build_model(fixed)
    task = build_task(fixed, tokenizer, preprocess=lambda image: image)
    long = " ".join(["a red circle on a blue background"] * 4)
    batch = task.collate([task.encode(Record("k", [torch.randn(3, 64, 64)], long, []))])
    assert model.embed_inputs(batch).embeds.shape[1] == 24


def test_attention_widths_must_divide_into_their_heads(setup):  # noqa: F811
    path = _config(setup, "heads", adapter__kind="perceiver", adapter__width=100)  # adapter.heads: 8
    with pytest.raises(ConfigError, match=r"^adapter.width=100 does not divide into adapter.heads=8 attention "
                                          r"heads: make adapter.width a multiple of adapter.heads$"):
        load_config(path)
    # vadapter's pooler and 1-layer resampler run with the tiny LM's heads; adapter.heads is the perceiver's
    with pytest.raises(ConfigError, match=r"^adapter.tiny_lm.width=34 does not divide into adapter.tiny_lm.heads=4"):
        load_config(path, ["--adapter.kind=vadapter", "--adapter.queries=8", "--adapter.tiny_lm.width=34"])
    assert load_config(path, ["--adapter.kind=vadapter", "--adapter.queries=8", "--adapter.tiny_lm.width=36",
                              "--adapter.heads=5"]).adapter.heads == 5


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_every_config_key_named_in_trainer_messages_exists():
    """Every dotted key written in trainers/ (messages, help, docstrings) and in the train and eval
    commands resolves in the config schema: a message never sends a user to a key that is not there."""
    named: dict[str, set[str]] = {}
    for path in sorted((ROOT / "trainers").rglob("*.py")):
        for text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            for key in keys_in(text):
                named.setdefault(key, set()).add(path.name)
    cli = ast.parse((ROOT / "pipelines" / "cli.py").read_text(encoding="utf-8"))
    for function in (n for n in cli.body if isinstance(n, ast.FunctionDef) and n.name in ("train", "eval_command")):
        for text in _strings(function):
            for key in keys_in(text):
                named.setdefault(key, set()).add("cli.py")
    assert {"adapter.tiny_lm.max_len", "data.max_caption_tokens", "run.eval_shards", "llm.path"} <= set(named)
    assert {k: v for k, v in named.items() if not resolves(k)} == {}


def test_vision_weight_errors_name_the_trainer_keys(tiny_clip, tmp_path):
    """filters/clip_model.py writes a recipe's `STAGE.model.pretrained`; the trainer's key is vision.pretrained."""
    from filters.clip_model import ClipWeightsError
    from trainers.vision import VisionEncoder

    cases = [((tiny_clip["name"], None, tiny_clip["config_dir"]), "vision.pretrained is not set"),
             ((tiny_clip["name"], str(tmp_path / "none.pt"), tiny_clip["config_dir"]),
              "vision.pretrained '" + str(tmp_path / "none.pt") + "' is neither a file"),
             ((tiny_clip["name"], tiny_clip["pretrained"], str(tmp_path / "missing")),
              "vision.config_dir '" + str(tmp_path / "missing") + "' is not a directory"),
             (("no-such-arch", tiny_clip["pretrained"], None), "vision.name 'no-such-arch' is not an open_clip")]
    for args, start in cases:
        with pytest.raises(ClipWeightsError) as err:
            VisionEncoder(*args)
        text = str(err.value)
        assert text.startswith(start) and ".model." not in text, text
        assert keys_in(text) and all(resolves(k) for k in keys_in(text)), keys_in(text)
