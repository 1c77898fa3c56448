"""Training configs: YAML -> frozen pydantic models, validated strictly, with `--section.key=value` overrides.

The models are manifests.schema.Strict, like the curation recipes: an unknown key, or a value of the
wrong type ("3", `yes` or 200.0 for an integer), stops the run before anything loads, naming the
dotted key (`optim.steps`), or the `--optim.steps=...` override it came from; values are never converted,
except that integers fill float fields. Files and overrides are read as YAML with YAML 1.2's floats, so
`1e-4` is a number (manifests/yaml_numbers.py).
Configs are frozen: derive a changed one with `config.model_copy(update=...)` on the section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from manifests.schema import Strict, unwrap_optional, validate_strict
from manifests.yaml_numbers import load_yaml
from trainers.lengths import tiny_lm_problem


class ConfigError(ValueError):
    pass


class VisionConfig(Strict):
    name: str = "ViT-B-16"
    pretrained: str | None = None  # open_clip tag or checkpoint path
    config_dir: str | None = None  # directory with NAME.json for a custom architecture
    random_init: bool = False  # explicit opt-in for throughput runs only; recorded in checkpoints


class LLMConfig(Strict):
    path: str = ""  # local directory, hub id, or (random_init) a shipped config's name: trainers/configs/llm/
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # RANDOM weights in llm.path's architecture (a config.json suffices): explicit opt-in for throughput
    # runs only; recorded in checkpoints (trainers/llm.py).
    random_init: bool = False


class TinyLMConfig(Strict):
    width: int = Field(256, ge=1)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    # Positions: stage 1 reads adapter.queries + data.max_caption_tokens tokens (256 + 32 by default),
    # the stage-2 vadapter adapter.queries; TrainConfig.validate checks both (trainers/lengths.py).
    max_len: int = Field(288, ge=1)


class AdapterConfig(Strict):
    kind: Literal["linear", "mlp", "perceiver", "vadapter"] = "vadapter"
    width: int = Field(512, ge=1)  # perceiver width
    layers: int = Field(6, ge=1)  # perceiver depth (vadapter always uses 1)
    queries: int = Field(256, ge=1)  # visual tokens out of the perceiver / vadapter / stage-1 pooler
    heads: int = Field(8, ge=1)  # perceiver heads (vadapter's pooler and resampler use tiny_lm.heads)
    tiny_lm: TinyLMConfig = TinyLMConfig()
    init_from: str | None = None  # vadapter: a stage-1 (captioner) checkpoint directory


class DataConfig(Strict):
    shards: str = ""  # a run's manifest.json, a brace pattern (DIR/shards/{00000..00009}.tar) or a glob; any fsspec URL
    # fsspec options for the stores of data.shards and run.eval_shards (s3://, gs://, ...), as
    # `vlcurate verify -S` takes them: {endpoint_url: http://127.0.0.1:9000, client_kwargs: {region_name: ...}}.
    # Credentials are better left to the store's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    # AWS_ENDPOINT_URL, ~/.aws, GOOGLE_APPLICATION_CREDENTIALS); any given here are written as
    # "<redacted>" in checkpoints, config.json and the eval page (config_to_dict).
    storage_options: dict[str, Any] = {}
    # With data.shards a run's manifest.json, each shard's size is always checked against it; true also
    # hashes every shard against its sha256 before training (one full read of the data: for a copy
    # whose bytes may have changed at the same length, e.g. a published set on another store).
    verify_shards: bool = False
    task: Literal["captioning"] = "captioning"  # trainers/tasks/: record -> model inputs and loss mask
    samples_per_epoch: int = Field(10_000, ge=1)
    batch_size: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)
    # Batches each DataLoader worker builds ahead of the step (DataLoader's prefetch_factor): enough
    # to ride out a slow batch (a large image, a remote read) without the step waiting. metrics.jsonl's
    # data_wait_s and loader_samples_per_s say whether the data path keeps up (trainers/train.py).
    prefetch: int = Field(4, ge=1)
    max_caption_tokens: int = Field(32, ge=1)
    # max: every batch is padded to the task's longest sequence (prompt + data.max_caption_tokens for
    # captioning), so every batch has the same shapes: a compiled step compiles once and CUDA graphs
    # (run.compile_mode: reduce-overhead) apply. longest: pad to the batch's longest caption, less
    # compute for eager (CPU) runs, but each new length recompiles a compiled step. Same loss either way.
    pad_to: Literal["max", "longest"] = "max"
    prompt: str = "Describe the following: <visual> :"  # stage 2 only; stage 1 captions from the image alone


class OptimConfig(Strict):
    # Ranges checked before anything loads: a negative lr failed in torch after the models were
    # built; a negative grad_clip silently reversed every gradient.
    lr: float = Field(5e-4, gt=0, allow_inf_nan=False)
    warmup_steps: int = Field(1000, ge=0)
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)  # max global grad norm; null: no clipping (the norm is still logged)
    accumulation: int = Field(1, ge=1)
    steps: int = Field(10_000, ge=1)
    # A NaN/inf loss or grad norm never updates the weights. false: the run stops at the next logging
    # or checkpoint step (the step itself never waits to check; trainers/step.py); true: count, go on.
    skip_nonfinite: bool = False


CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class RunConfig(Strict):
    out_dir: str = "runs/train"
    stage: Literal["vlm", "captioner"] = "vlm"  # captioner: PaLM2-VAdapter stage 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    compile: bool = False
    # torch.compile's mode when run.compile is true. reduce-overhead replays the step as CUDA graphs
    # (no per-kernel launch cost; it needs the fixed shapes of data.pad_to: max); CPU runs compile
    # without graphs whatever the mode.
    compile_mode: CompileMode = "reduce-overhead"
    activation_checkpointing: bool = False
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)  # also how often the host reads the device (each read waits for it)
    # Held-out shards for `vlcurate eval`. Unset (or sharing shards with data.shards), eval scores
    # training data and labels its scores "training data", never "validation" (trainers/evaluate.py).
    eval_shards: str = ""
    # `vlcurate eval` scores every sample of the eval split once, in shard order (else --batches
    # random batches); evaluate(batches=None) does the same.
    eval_whole_split: bool = False
    tensorboard: bool = False
    # CPU threads of the training (and eval) process (torch.set_num_threads). 0: torch's own when
    # OMP_NUM_THREADS is set, else the CPUs this process may use less data.workers less one, at least 1
    # (trainers/train.py cpu_threads: a thread per core beside busy workers stalls on a small CPU).
    threads: int = Field(0, ge=0)


class TrainConfig(Strict):
    run: RunConfig = RunConfig()
    vision: VisionConfig = VisionConfig()
    llm: LLMConfig = LLMConfig()
    adapter: AdapterConfig = AdapterConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()

    def validate(self) -> TrainConfig:
        """Checks across sections, which a field's own type cannot express (per-field ones are Field(ge=...))."""
        if not self.data.shards:
            raise ConfigError("data.shards is required (a manifest.json, a brace pattern or a glob of .tar)")
        if self.run.stage == "vlm" and not self.llm.path:
            raise ConfigError("llm.path is required for run.stage: vlm")
        if self.run.stage == "captioner" and self.adapter.kind != "vadapter":
            raise ConfigError("run.stage: captioner trains the tiny LM of adapter.kind: vadapter")
        problem = self._heads_problem() or tiny_lm_problem(self)
        if problem:
            raise ConfigError(problem)
        return self

    def _heads_problem(self) -> str | None:
        """Attention splits its width into heads: each width must divide by the heads it is used with."""
        a, t = self.adapter, self.adapter.tiny_lm
        pairs = []
        if self.run.stage == "captioner" or a.kind == "vadapter":  # its pooler and 1-layer resampler too
            pairs.append(("adapter.tiny_lm.width", t.width, "adapter.tiny_lm.heads", t.heads))
        if self.run.stage == "vlm" and a.kind == "perceiver":
            pairs.append(("adapter.width", a.width, "adapter.heads", a.heads))
        for width_key, width, heads_key, heads in pairs:
            if width % heads:
                return (f"{width_key}={width} does not divide into {heads_key}={heads} attention heads: "
                        f"make {width_key} a multiple of {heads_key}")
        return None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if not text.startswith("--") or "=" not in text:
        raise ConfigError(f"override {text!r}: write --section.key=value")
    key, raw = text[2:].split("=", 1)
    try:
        value = load_yaml(raw)
        json.dumps(value, allow_nan=True)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from None
    except (TypeError, ValueError):  # a YAML date (2024-01-01), a set, ...
        raise ConfigError(f"override {text!r}: {raw} is not plain data (quote it for a string)") from None
    return key.split("."), value


def _fill_empty_sections(model: type[BaseModel], data: Any) -> Any:
    """A section left empty in YAML (`llm:` with only comments) is None: read it as {} (all defaults)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        inner = unwrap_optional(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and name in out:
            out[name] = _fill_empty_sections(inner, {} if out[name] is None else out[name])
    return out


def _validated(data: Any, source: str, overrides: dict[str, str] | None = None) -> TrainConfig:
    """`overrides`: dotted key -> the `--key=value` that set it, to name it in errors instead of `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    data = _fill_empty_sections(TrainConfig, data)
    return validate_strict(TrainConfig, data, source, ConfigError, origins=overrides)


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    given: dict[str, str] = {}  # dotted key -> the override that set it last (errors name it)
    for text in overrides:
        keys, value = _parse_override(text)
        dotted = ".".join(keys)
        given = {k: v for k, v in given.items() if k != dotted and not k.startswith(dotted + ".")}
        given[dotted] = text
        node = data
        for depth, k in enumerate(keys[:-1]):
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                raise ConfigError(f"override {text!r}: {'.'.join(keys[:depth + 1])} is not a section")
            node = node[k]
        node[keys[-1]] = value
    return _validated(data, str(path), given).validate()


REDACTED = "<redacted>"
_SECRET_WORDS = ("secret", "token", "password", "credential", "account_key", "connection_string", "sas")


def is_secret_option(name: str) -> bool:
    """Storage option names that hold credentials (s3fs key/secret/token, botocore's aws_*_key*, gcsfs
    token, adlfs account_key / sas_token / connection_string / credential, passwords)."""
    name = name.lower()
    return name == "key" or name.endswith(("_key", "_key_id")) or any(word in name for word in _SECRET_WORDS)


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_option(str(k)) else _redacted(v) for k, v in value.items()}
    return value


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The config as plain data, for checkpoints, config.json and the eval page: credentials in
    data.storage_options are written as "<redacted>", never in clear."""
    data = config.model_dump()
    data["data"]["storage_options"] = _redacted(data["data"]["storage_options"])
    return data


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A config from plain data (a checkpoint's state.json, a script): keys it lacks take their defaults,
    so checkpoints written before a key existed still load. Cross-section checks: call .validate()."""
    return _validated(data, "config")
