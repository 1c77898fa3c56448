"""data.pad_to: max gives every batch the same shapes and plain ints, so a compiled step compiles
once (and CUDA graphs can replay it) whatever the captions' lengths; padding never changes the loss."""

from __future__ import annotations

import pytest
import torch

from trainers.config import config_from_dict
from trainers.inputs import Example, FixedShape, collate
from trainers.tasks import Record, build_task

CAPTIONS = ["a star", "a red circle on a blue background", "the large green square"]  # 3, 8, 5 tokens with EOS


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    from tests.tiny_llm import write_tiny_llm

    return write_tiny_llm(tmp_path_factory.mktemp("llm"))


def _config(tiny_clip, llm, stage: str, pad_to: str):
    return config_from_dict({
        "run": {"stage": stage, "device": "cpu"},
        "vision": {"name": tiny_clip["name"], "pretrained": tiny_clip["pretrained"],
                   "config_dir": tiny_clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": "vadapter" if stage == "captioner" else "mlp", "queries": 4,
                    "tiny_lm": {"width": 32, "layers": 1, "heads": 4, "max_len": 32}},
        "data": {"shards": "unused", "max_caption_tokens": 12, "pad_to": pad_to},
    }).validate()


def _model_and_tasks(tiny_clip, llm, stage: str):
    from trainers.build import build_model

    torch.manual_seed(0)
    model, _, tokenizer, _ = build_model(_config(tiny_clip, llm, stage, "max"))
    tasks = {pad: build_task(_config(tiny_clip, llm, stage, pad), tokenizer, preprocess=lambda image: image)
             for pad in ("max", "longest")}
    return model.train(), tasks


def _batch(task, captions, seed: int = 0):
    images = torch.randn(len(captions), 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return task.collate([task.encode(Record(f"k{i}", [image], caption, []))
                         for i, (image, caption) in enumerate(zip(images, captions))])


@pytest.mark.parametrize("stage", ["vlm", "captioner"])
def test_padding_to_the_maximum_changes_neither_loss_nor_gradients(tiny_clip, llm, stage):
    model, tasks = _model_and_tasks(tiny_clip, llm, stage)
    prompt = 0 if stage == "captioner" else len(tasks["max"].before) + len(tasks["max"].after)
    results = {}
    for pad, task in tasks.items():
        inputs = _batch(task, CAPTIONS)
        model.zero_grad()
        loss = model(inputs)
        loss.backward()
        results[pad] = inputs, loss.detach(), [p.grad.clone() for p in model.trainable_parameters()]
    fixed, longest = results["max"][0], results["longest"][0]
    assert fixed.ids.shape[1] == prompt + 12 and longest.ids.shape[1] == prompt + 8
    assert fixed.loss_columns == (prompt, prompt + 12) and fixed.max_images == 1
    assert torch.allclose(results["max"][1], results["longest"][1], atol=1e-6, rtol=0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results["max"][2], results["longest"][2]))


def _graphs_compiled(model, batches) -> list[int]:
    """Graphs torch.compile (backend aot_eager: no C++ compiler) has built after a forward and backward
    on each batch in turn."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=aot_autograd(fw_compiler=counting, bw_compiler=counting))
    built = []
    for inputs in batches:
        compiled(inputs).backward()
        built.append(len(graphs))
    return built


def test_a_compiled_step_compiles_once_for_captions_of_every_length(tiny_clip, llm):
    model, tasks = _model_and_tasks(tiny_clip, llm, "vlm")
    lengths = [[CAPTIONS[0]] * 2, [CAPTIONS[1]] * 2, [CAPTIONS[2]] * 2]  # a different longest caption each time
    fixed = [_batch(tasks["max"], captions, seed) for seed, captions in enumerate(lengths)]
    assert len({b.ids.shape for b in fixed}) == 1 and len({b.loss_columns for b in fixed}) == 1
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            first, *rest = _graphs_compiled(model, fixed)
        assert first > 0 and rest == [first, first]  # batches 2 and 3 replay batch 1's graphs
        # The same captions padded to their batch's longest recompile: the check above can fail.
        longest = [_batch(tasks["longest"], captions, seed) for seed, captions in enumerate(lengths)]
        assert _graphs_compiled(model, longest)[-1] > first
    finally:
        torch._dynamo.reset()


def test_a_fixed_shape_pads_every_batch_alike_and_refuses_what_does_not_fit():
    image = torch.zeros(3, 8, 8)
    shape = FixedShape(length=6, loss_columns=(2, 6), max_images=1)
    short = collate([Example([1, 2, 3], [0, 0, 1], [image], [1])], pad_id=0, shape=shape)
    assert short.ids.tolist() == [[1, 2, 3, 0, 0, 0]] and short.loss_columns == (2, 6) and short.max_images == 1
    with pytest.raises(ValueError, match="does not fit its task's fixed shape"):
        collate([Example([1, 2, 3, 4, 5, 6, 7], [0] * 6 + [1], [image], [1])], pad_id=0, shape=shape)
    with pytest.raises(ValueError, match="does not fit its task's fixed shape"):
        collate([Example([1, 2, 3], [0, 1, 1], [image], [1])], pad_id=0, shape=shape)  # a loss token in column 1
