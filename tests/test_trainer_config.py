"""Training configs are strict: wrong types are refused (never converted) with the dotted key named,
unknown keys list the allowed ones, configs are frozen, and checkpoints' saved configs still load."""

from __future__ import annotations

import pydantic
import pytest
import yaml

from trainers.config import ConfigError, config_from_dict, config_to_dict, load_config

# The config a checkpoint written before the pydantic models (and before data.task) saved in state.json.
OLD_CHECKPOINT_CONFIG = {
    "run": {"out_dir": "runs/cap", "stage": "captioner", "device": "cpu", "seed": 3, "compile": False,
            "activation_checkpointing": False, "checkpoint_every": 1000, "log_every": 1, "eval_shards": "",
            "tensorboard": False},
    "vision": {"name": "vlcurate-tiny-clip", "pretrained": "clip/vlcurate-tiny-clip.pt", "config_dir": "clip",
               "random_init": False},
    "llm": {"path": "llm", "gguf_file": None, "dtype": "float32"},
    "adapter": {"kind": "vadapter", "width": 32, "layers": 2, "queries": 8, "heads": 4,
                "tiny_lm": {"width": 32, "layers": 1, "heads": 4, "max_len": 64}, "init_from": None},
    "data": {"shards": "shapes/{00000..00001}.tar", "samples_per_epoch": 10000, "batch_size": 8, "workers": 0,
             "max_caption_tokens": 12, "prompt": "Describe the following: <visual> :"},
    "optim": {"lr": 0.003, "warmup_steps": 2, "weight_decay": 0.0001, "beta1": 0.9, "beta2": 0.999,
              "grad_clip": 1.0, "accumulation": 2, "steps": 4},
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"llm": {"path": "somewhere"}, "data": {"shards": "x/{00000..00001}.tar"}}))
    return path


@pytest.mark.parametrize("override, where, shown", [
    ("--optim.steps=3.5", "optim.steps", "3.5"),
    ("--optim.steps=200.0", "optim.steps", "200.0"),  # a float, even a whole one, is not an integer
    ('--optim.steps="3"', "optim.steps", "'3'"),  # a string is not a number
    ("--data.workers=yes", "data.workers", "True"),  # YAML's yes is a boolean, not 1
    ("--adapter.tiny_lm.width=wide", "adapter.tiny_lm.width", "'wide'"),
    ("--run.compile=1", "run.compile", "1"),  # 1 is not a boolean
    ("--run.compile=on", None, None),  # YAML 1.1 reads `on` as true: a boolean, accepted
    ("--data.prompt=3", "data.prompt", "3"),
])
def test_values_are_not_converted_and_errors_name_the_key(config_file, override, where, shown):
    if where is None:
        assert load_config(config_file, [override]).run.compile is True
        return
    with pytest.raises(ConfigError) as err:
        load_config(config_file, [override])
    text = str(err.value)
    assert f"{where}: Input should be a valid" in text and f"got {shown}" in text, text
    # the value came from the command line: the override is named, not the file
    assert text.startswith(f"command-line overrides: 1 problem(s)\n  {override}: {where}: "), text
    assert str(config_file) not in text, text


def test_integers_fill_float_fields(config_file):
    config = load_config(config_file, ["--optim.lr=1", "--optim.grad_clip=2"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float) and config.optim.grad_clip == 2.0


def test_unknown_keys_and_sections_name_what_is_allowed(config_file):
    with pytest.raises(ConfigError, match=r"adapter\.tiny_lm\.depth: unknown key 'depth' \(allowed here: width, "
                                          r"layers, heads, max_len\)"):
        load_config(config_file, ["--adapter.tiny_lm.depth=2"])
    with pytest.raises(ConfigError, match=r"optimizer: unknown key 'optimizer' \(allowed here: run, vision"):
        load_config(config_file, ["--optimizer.lr=0.1"])
    with pytest.raises(ConfigError, match="data.task: Input should be 'captioning'"):
        load_config(config_file, ["--data.task=vqa"])


def test_a_misspelt_key_gets_the_closest_one_here_or_in_another_section(config_file):
    with pytest.raises(ConfigError, match=r"run\.outdir: unknown key 'outdir': did you mean 'out_dir'\? \(allowed"):
        load_config(config_file, ["--run.outdir=x"])
    with pytest.raises(ConfigError, match=r"run\.warmup_step: unknown key 'warmup_step': did you mean "
                                          r"'optim\.warmup_steps'\?"):
        load_config(config_file, ["--run.warmup_step=3"])
    with pytest.raises(ConfigError) as err:
        load_config(config_file, ["--run.colour=red"])
    assert "did you mean" not in str(err.value)


def test_every_problem_is_reported_at_once(config_file):
    with pytest.raises(ConfigError) as err:
        load_config(config_file, ["--optim.steps=0", "--data.batch_size=-1", "--run.device=tpu"])
    text = str(err.value)
    assert "3 problem(s)" in text
    assert "optim.steps: Input should be greater than or equal to 1" in text
    assert "data.batch_size: Input should be greater than or equal to 1" in text
    assert "run.device: Input should be 'auto', 'cpu' or 'cuda'" in text


def test_cross_section_checks(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"llm": {"path": "somewhere"}}))
    with pytest.raises(ConfigError, match="data.shards is required"):
        load_config(path)
    with pytest.raises(ConfigError, match="llm.path is required for run.stage: vlm"):
        load_config(path, ["--data.shards=x.tar", '--llm.path=""'])
    with pytest.raises(ConfigError, match="captioner trains the tiny LM of adapter.kind: vadapter"):
        load_config(path, ["--data.shards=x.tar", "--run.stage=captioner", "--adapter.kind=mlp"])


def test_empty_sections_take_defaults_and_overrides_need_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("llm:\n  path: somewhere\ndata:\n  shards: x.tar\nvision:\n  # nothing set\nadapter:\n")
    config = load_config(path, ["--adapter.tiny_lm.width=64"])
    assert config.vision.name == "ViT-B-16" and config.adapter.kind == "vadapter"
    assert config.adapter.tiny_lm.width == 64 and config.adapter.tiny_lm.layers == 4
    with pytest.raises(ConfigError, match="llm.path is not a section"):
        load_config(path, ["--llm.path.x=1"])
    with pytest.raises(ConfigError, match="write --section.key=value"):
        load_config(path, ["optim.lr=1"])
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_configs_are_frozen_and_copied_with_changes(config_file):
    config = load_config(config_file)
    with pytest.raises(pydantic.ValidationError):
        config.optim.steps = 5
    changed = config.model_copy(update={"optim": config.optim.model_copy(update={"steps": 5})})
    assert changed.optim.steps == 5 and config.optim.steps == 10_000


def test_old_checkpoint_configs_still_load_and_round_trip():
    config = config_from_dict(OLD_CHECKPOINT_CONFIG).validate()
    assert config.data.task == "captioning" and config.run.stage == "captioner" and config.optim.accumulation == 2
    saved = config_to_dict(config)
    assert saved == {**OLD_CHECKPOINT_CONFIG,  # keys added since
                     "run": {**OLD_CHECKPOINT_CONFIG["run"], "eval_whole_split": False, "threads": 0,
                             "compile_mode": "reduce-overhead"},
                     "llm": {**OLD_CHECKPOINT_CONFIG["llm"], "random_init": False},
                     "data": {**OLD_CHECKPOINT_CONFIG["data"], "task": "captioning", "storage_options": {},
                              "pad_to": "max", "prefetch": 4, "verify_shards": False},
                     "optim": {**OLD_CHECKPOINT_CONFIG["optim"], "skip_nonfinite": False}}
    assert config_from_dict(saved) == config
    with pytest.raises(ConfigError, match=r"config: 1 problem\(s\)\n  optim.warmup: unknown key"):
        config_from_dict({**OLD_CHECKPOINT_CONFIG, "optim": {"warmup": 3}})


def test_storage_credentials_are_never_written(config_file):
    options = ['--data.storage_options={"endpoint_url": "http://127.0.0.1:9000", "key": "AKIA-ID", "secret": "s3cr3t",'
               ' "client_kwargs": {"region_name": "us-east-1", "aws_session_token": "tok"}}']
    config = load_config(config_file, options)
    assert config.data.storage_options["secret"] == "s3cr3t"  # used as given
    saved = config_to_dict(config)["data"]["storage_options"]  # checkpoints, config.json, the eval page
    assert saved == {"endpoint_url": "http://127.0.0.1:9000", "key": "<redacted>", "secret": "<redacted>",
                     "client_kwargs": {"region_name": "us-east-1", "aws_session_token": "<redacted>"}}
    assert "s3cr3t" not in str(config_to_dict(config)) and "AKIA-ID" not in str(config_to_dict(config))
    with pytest.raises(ConfigError, match="data.storage_options: Input should be an object"):
        load_config(config_file, ["--data.storage_options=endpoint"])



def test_exponent_floats_load_from_files_and_overrides(tmp_path):
    """1e-4 is a float (YAML 1.2, JSON, Python), not the string YAML 1.1 made of it, in a file and in an override."""
    path = tmp_path / "train.yaml"
    path.write_text("llm: {path: somewhere}\ndata:\n  shards: x.tar\n  prompt: 1e5 reasons <visual>\n"
                    "optim: {lr: 1e-4, weight_decay: 5E-2, steps: 1_000, warmup_steps: 10}\n")
    config = load_config(path)
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float) and config.optim.weight_decay == 0.05
    assert config.optim.steps == 1000 and type(config.optim.steps) is int and type(config.optim.warmup_steps) is int
    assert config.data.prompt == "1e5 reasons <visual>"
    config = load_config(path, ["--optim.lr=3e-4", "--optim.grad_clip=2.5e-3", "--optim.steps=20",
                                "--data.prompt=1e5 reasons", '--run.out_dir="1e-4"'])
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float) and config.optim.grad_clip == 2.5e-3
    assert config.optim.steps == 20 and type(config.optim.steps) is int
    assert (config.data.prompt, config.run.out_dir) == ("1e5 reasons", "1e-4")  # quoted: a string
    with pytest.raises(ConfigError, match=r"optim.steps: Input should be a valid integer, got 1000.0"):
        load_config(path, ["--optim.steps=1e3"])  # an exponent makes a float, which an integer field refuses


def test_optimizer_values_out_of_range_are_refused_before_anything_loads(config_file):
    """A negative lr failed in torch after the models were built; a negative grad_clip reversed every
    gradient (gradient ascent), silently. null turns clipping off."""
    for override, shown in [("--optim.lr=-1", "optim.lr: Input should be greater than 0"),
                            ("--optim.lr=.nan", "optim.lr: Input should be a finite number"),
                            ("--optim.beta1=1.5", "optim.beta1: Input should be less than 1"),
                            ("--optim.grad_clip=-1", "optim.grad_clip: Input should be greater than 0"),
                            ("--optim.weight_decay=-1", "optim.weight_decay: Input should be greater than or equal to 0")]:
        with pytest.raises(ConfigError, match=shown):
            load_config(config_file, [override])
    assert load_config(config_file, ["--optim.grad_clip=null"]).optim.grad_clip is None


def test_a_bad_override_is_named_instead_of_the_file(config_file):
    with pytest.raises(ConfigError) as err:
        load_config(config_file, ["--optim.lr=fast", "--optim.steps=20"])
    text = str(err.value)
    assert str(config_file) not in text, text
    assert text.startswith("command-line overrides: 1 problem(s)\n"), text
    assert "\n  --optim.lr=fast: optim.lr: Input should be a valid number, got 'fast'" in text, text
    # a problem in the file and one in an override: each is named where it came from
    config_file.write_text(yaml.safe_dump({"llm": {"path": "somewhere"}, "data": {"shards": "x.tar"},
                                           "run": {"seed": "three"}}))
    with pytest.raises(ConfigError) as err:
        load_config(config_file, ["--data.batch_size=0", "--optim.lr=1e-4"])
    text = str(err.value)
    assert text.startswith(f"{config_file}: 2 problem(s)\n"), text
    assert "\n  --data.batch_size=0: data.batch_size: Input should be greater than or equal to 1" in text, text
    assert "\n  run.seed: Input should be a valid integer, got 'three'" in text, text
    # a whole section given on the command line is named for the keys inside it
    with pytest.raises(ConfigError, match=r"\n  --optim=\{steps: x\}: optim.steps: Input should be a valid integer"):
        load_config(config_file, ["--optim={steps: x}", "--run.seed=1"])
