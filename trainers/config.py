"""Training configs: YAML -> nested dataclasses, validated, with `--section.key=value` overrides.

An unknown key or a value of the wrong type stops the run before anything loads, naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class VisionConfig:
    name: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag or checkpoint path
    config_dir: str | None = None  # directory with NAME.json for a custom architecture
    random_init: bool = False  # explicit opt-in for throughput runs only; recorded in checkpoints


@dataclass
class LLMConfig:
    path: str = ""  # local directory or hub id
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclass
class TinyLMConfig:
    width: int = 256
    layers: int = 4
    heads: int = 4
    max_len: int = 128


@dataclass
class AdapterConfig:
    kind: Literal["linear", "mlp", "perceiver", "vadapter"] = "vadapter"
    width: int = 512  # perceiver width
    layers: int = 6  # perceiver depth (vadapter always uses 1)
    queries: int = 256  # visual tokens out of the perceiver / vadapter / stage-1 pooler
    heads: int = 8
    tiny_lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    init_from: str | None = None  # vadapter: a stage-1 (captioner) checkpoint directory


@dataclass
class DataConfig:
    shards: str = ""  # a run's manifest.json, a brace pattern (DIR/shards/{00000..00009}.tar) or a glob
    samples_per_epoch: int = 10_000
    batch_size: int = 32
    workers: int = 2
    max_caption_tokens: int = 32
    prompt: str = "Describe the following: <visual> :"


@dataclass
class OptimConfig:
    lr: float = 5e-4
    warmup_steps: int = 1000
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    accumulation: int = 1
    steps: int = 10_000


@dataclass
class RunConfig:
    out_dir: str = "runs/train"
    stage: Literal["vlm", "captioner"] = "vlm"  # captioner: PaLM2-VAdapter stage 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    compile: bool = False
    activation_checkpointing: bool = False
    checkpoint_every: int = 500
    log_every: int = 10
    eval_shards: str = ""  # held-out shards for `vlcurate eval` (default: data.shards)
    tensorboard: bool = False


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> TrainConfig:
        if not self.data.shards:
            raise ConfigError("data.shards is required (a manifest.json, a brace pattern or a glob of .tar)")
        if self.run.stage == "vlm" and not self.llm.path:
            raise ConfigError("llm.path is required for run.stage: vlm")
        if self.run.stage == "captioner" and self.adapter.kind != "vadapter":
            raise ConfigError("run.stage: captioner trains the tiny LM of adapter.kind: vadapter")
        for name, value in (("data.batch_size", self.data.batch_size), ("optim.steps", self.optim.steps),
                            ("optim.accumulation", self.optim.accumulation)):
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        return self


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where + '.' if where else ''}{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
    values = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value or {}, key)
        else:
            values[name] = _check(value, hint, key)
    return cls(**values)


def _check(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _parse_override(text: str) -> tuple[list[str], Any]:
    if not text.startswith("--") or "=" not in text:
        raise ConfigError(f"override {text!r}: write --section.key=value")
    key, raw = text[2:].split("=", 1)
    return key.split("."), yaml.safe_load(raw)


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return _build(TrainConfig, data, "").validate()


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, "")
