"""The frozen LLM's LM head runs on the scored positions only (FrozenLLM.logits_at): the loss and the
adapter's gradients are those of the full-logits computation, and models whose logits are more than
their head's output (soft-capped, scaled) keep the full forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.trainer_batches import mixed_caption_batch
from trainers.adapters import LinearAdapter, PerceiverAdapter
from trainers.inputs import scored, token_loss
from trainers.llm import FrozenLLM, full_logits_reason
from trainers.vision import VisionEncoder
from trainers.vlm import AdapterVLM


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vision(tiny_clip):
    return VisionEncoder(tiny_clip["name"], tiny_clip["pretrained"], tiny_clip["config_dir"])


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    from tests.tiny_llm import write_tiny_llm

    return Path(write_tiny_llm(tmp_path_factory.mktemp("llm")))


def _with_config(llm_dir: Path, tmp: Path, config) -> FrozenLLM:
    """A FrozenLLM of `config`'s architecture (random weights), with the tiny LLM's tokenizer."""
    folder = tmp / config.model_type
    folder.mkdir()
    for name in llm_dir.iterdir():
        if name.name not in ("config.json", "model.safetensors", "generation_config.json"):
            (folder / name.name).write_bytes(name.read_bytes())
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    torch.manual_seed(0)
    return FrozenLLM(str(folder), random_init=True)


def _batch(tokenizer, images: int):
    return mixed_caption_batch(tokenizer, images)


def _reference_loss(model: AdapterVLM, inputs) -> torch.Tensor:
    """The loss as it was computed before logits_at: the model's own logits for every position, then
    the scored ones picked."""
    spliced = model.embed_inputs(inputs)
    logits = model.llm.model(inputs_embeds=spliced.embeds, attention_mask=spliced.mask, use_cache=False).logits
    return token_loss(scored(logits, inputs, spliced.text_positions), inputs)


def _loss_and_grads(model: AdapterVLM, inputs, loss_fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
    params = model.trainable_parameters()
    loss = loss_fn(model, inputs)
    return loss.detach(), list(torch.autograd.grad(loss, params))


def _assert_same_as_reference(model: AdapterVLM, inputs) -> None:
    loss, grads = _loss_and_grads(model, inputs, lambda m, i: m(i))
    ref_loss, ref_grads = _loss_and_grads(model, inputs, _reference_loss)
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=1e-6), (loss, ref_loss)
    for grad, ref in zip(grads, ref_grads):
        assert ref.abs().sum() > 0
        assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-6), (grad - ref).abs().max()


@pytest.mark.parametrize("images", [1, 2])
@pytest.mark.parametrize("kind", ["linear", "perceiver"])
def test_scored_logits_give_the_full_logits_loss_and_gradients(vision, llm_dir, kind, images):
    llm = FrozenLLM(str(llm_dir))
    assert llm.full_logits is None  # Llama: the head runs on the scored positions only
    torch.manual_seed(1)
    adapter = (LinearAdapter(vision.width, llm.width) if kind == "linear"
               else PerceiverAdapter(vision.width, llm.width, width=32, layers=2, queries=8, heads=4))
    model = AdapterVLM(vision, adapter, llm).train()
    inputs = _batch(llm.tokenizer, images)
    # The head never sees a (B, L, ...) tensor: only the scored positions (B, C, D).
    seen = []
    handle = llm.model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    try:
        model(inputs)
    finally:
        handle.remove()
    first, last = inputs.loss_columns
    assert seen == [(inputs.batch_size, last - first, llm.width)]
    _assert_same_as_reference(model, inputs)


def test_tied_head_gives_the_full_logits_loss(vision, llm_dir, tmp_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(llm_dir)
    config.tie_word_embeddings = True  # as SmolLM2's: the head is the input embedding
    llm = _with_config(llm_dir, tmp_path, config)
    assert llm.full_logits is None
    assert llm.model.get_output_embeddings().weight is llm.model.get_input_embeddings().weight
    torch.manual_seed(1)
    _assert_same_as_reference(AdapterVLM(vision, LinearAdapter(vision.width, llm.width), llm).train(),
                              _batch(llm.tokenizer, 1))


@pytest.mark.parametrize("architecture", ["gemma2", "cohere"])
def test_transformed_logits_keep_the_full_forward(vision, llm_dir, tmp_path, architecture):
    """Gemma 2 soft-caps its logits, Cohere scales them: head(hidden) would not be their logits."""
    from transformers import AutoConfig, CohereConfig, Gemma2Config

    small = dict(vocab_size=AutoConfig.from_pretrained(llm_dir).vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=0, eos_token_id=1,
                 bos_token_id=1)
    if architecture == "gemma2":
        config = Gemma2Config(**small, final_logit_softcapping=0.5)  # small enough to change random logits
        attribute = "final_logit_softcapping"
    else:
        config = CohereConfig(**small, logit_scale=3.0)
        attribute = "logit_scale"
    llm = _with_config(llm_dir, tmp_path, config)
    assert attribute in llm.full_logits and attribute in full_logits_reason(llm.model)
    with torch.no_grad():  # the transform matters: head(hidden) differs from the model's logits
        embeds, mask = llm.embed(torch.arange(5)[None]), torch.ones(1, 5, dtype=torch.long)
        assert not torch.allclose(llm.head(llm.hidden(embeds, mask)), llm(embeds, mask), atol=1e-4)
    torch.manual_seed(1)
    _assert_same_as_reference(AdapterVLM(vision, LinearAdapter(vision.width, llm.width), llm).train(),
                              _batch(llm.tokenizer, 1))


def test_unnamed_logit_change_is_caught_by_the_check(llm_dir, monkeypatch):
    """An architecture altering its logits in a way no config attribute names still gets the full forward."""
    llm = FrozenLLM(str(llm_dir))
    assert llm._head_mismatch() is None
    forward = llm.model.forward

    def masked(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits[..., 3] = -1e4  # as Chameleon masks its image tokens
        return out

    monkeypatch.setattr(llm.model, "forward", masked)
    assert "differs" in llm._head_mismatch()
