"""Model FLOPs of one training sample, component by component, from the model's real shapes.

Counted: matrix multiplications only, 2*m*n*k each, which is what torch.utils.flop_counter counts
(norms, activations, softmax and the loss are elementwise: a small fraction of a percent here).
Each component is counted over the sequence lengths it actually processes in the batch, padding
included, since padding runs too:

- a linear layer: 2 * tokens * in * out forward. Its backward is one matmul of the same size for
  the weight's gradient, when the weight trains, and one for the input's gradient, when anything
  before the layer needs it. So the frozen LLM costs forward + input gradients (2x forward): nothing
  of it trains, but gradients flow through it to the adapter; the adapter's layers cost 3x forward,
  except its first, which reads the frozen vision tokens and computes the weight gradient alone.
- attention scores: QK^T and AV, 4 * queries * keys * width forward, every query against every key
  (causal masks are not discounted: torch's counter does not, and kernels given a padding mask run
  the full square). Backward is 2.5x forward: the fused kernels' 5 matmuls, which recompute QK^T
  (torch.utils.flop_counter.sdpa_backward_flop_count).
- an LM head: 2 * vocab * width per position that gets logits, tied to the input embedding or not.
  Both the frozen LLM and the captioner's tiny LM project only the positions the loss scores (the
  batch's loss columns). An LLM whose logits are more than its head's output (trainers/llm.py
  FrozenLLM.full_logits: soft-capped or scaled logits, say) computes them for every position of the
  spliced sequence instead, and is counted so.
- the frozen vision tower: forward only (it runs under no_grad), the patch convolution included.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from trainers.adapters import LinearAdapter, MLPAdapter, PerceiverAdapter, PerceiverResampler, VAdapter
from trainers.captioner import Captioner
from trainers.inputs import ModelInputs
from trainers.layers import Attention

# Backward of fused attention over forward (see the module docstring).
ATTENTION_BACKWARD = 2.5


@dataclass(frozen=True)
class Part:
    """FLOPs of one component for one sample."""

    forward: float
    backward: float

    @property
    def total(self) -> float:
        return self.forward + self.backward


@dataclass(frozen=True)
class SampleFlops:
    """FLOPs of one training sample (forward + backward), by component, in the order they run."""

    parts: dict[str, Part]

    @property
    def total(self) -> float:
        return sum(part.total for part in self.parts.values())

    def summary(self) -> str:
        parts = " + ".join(f"{name} {part.total / 1e9:.2f}" for name, part in self.parts.items())
        return f"{parts} = {self.total / 1e9:.2f} GFLOP/sample"


class _Tally:
    """Forward and backward matmul FLOPs of one component, for the whole batch."""

    def __init__(self):
        self.forward = self.backward = 0.0

    def matmul(self, flops: float, weight_grad: bool, input_grad: bool) -> None:
        self.forward += flops
        self.backward += flops * (weight_grad + input_grad)

    def linear(self, layer: nn.Linear, tokens: int, input_grad: bool = True) -> None:
        self.matmul(2.0 * tokens * layer.in_features * layer.out_features, layer.weight.requires_grad, input_grad)

    def scores(self, queries: int, keys: int, width: int, grad: bool = True) -> None:
        flops = 4.0 * queries * keys * width
        self.forward += flops
        self.backward += ATTENTION_BACKWARD * flops if grad else 0.0

    def attention(self, attn: Attention, rows: int, queries: int, keys: int) -> None:
        """trainers.layers.Attention over `rows` sequences of `queries` queries and `keys` keys."""
        self.linear(attn.q, rows * queries)
        self.linear(attn.kv, rows * keys)
        self.scores(rows * queries, keys, attn.q.out_features)
        self.linear(attn.out, rows * queries)

    def blocks(self, blocks: nn.ModuleList, rows: int, length: int) -> None:
        """trainers.layers.Block self-attention blocks over `rows` sequences of `length` tokens."""
        for block in blocks:
            self.attention(block.attn, rows, length, length)
            self.linear(block.mlp.fc, rows * length)
            self.linear(block.mlp.proj, rows * length)

    def part(self, samples: int) -> Part:
        return Part(self.forward / samples, self.backward / samples)


def sample_flops(model: nn.Module, inputs: ModelInputs) -> SampleFlops:
    """FLOPs of one training sample of this batch (batch FLOPs / batch size): the stage-2 AdapterVLM
    (vision, adapter, llm) or the stage-1 Captioner (vision, pooler, tiny_lm). Reads shapes only:
    nothing runs on the device."""
    images, rows = len(inputs.pixels), inputs.batch_size
    vision = _vision(model.vision.visual, images, *inputs.pixels.shape[-2:])
    patches = model.vision.tokens
    if isinstance(model, Captioner):
        pooler = _Tally()
        queries = model.pooler.queries.shape[0]
        pooler.attention(model.pooler.attn, images, queries, patches)
        tiny = _Tally()
        tiny.blocks(model.tiny_lm.blocks, rows, inputs.ids.shape[1] + queries * inputs.max_images)
        first, last = inputs.loss_columns
        tiny.linear(model.tiny_lm.lm_head, rows * (last - first))
        parts = {"vision": vision, "pooler": pooler, "tiny_lm": tiny}
    else:
        adapter, visual = _adapter(model.adapter, images, patches)
        length = inputs.ids.shape[1] + visual * inputs.max_images
        first, last = inputs.loss_columns
        # The positions the LM head runs on: the scored ones, or all (FrozenLLM.logits_at decides).
        logits = length if model.llm.full_logits else last - first
        llm = _llm(model.llm.model, rows, length, logits)
        parts = {"vision": vision, "adapter": adapter, "llm": llm}
    return SampleFlops({name: tally.part(rows) for name, tally in parts.items()})


def _vision(visual: nn.Module, images: int, height: int, width: int) -> _Tally:
    """An open_clip VisionTransformer: patch convolution, blocks over the patches + class token,
    the projection of the pooled token."""
    if getattr(visual, "attn_pool", None) is not None:
        raise ValueError("FLOP count: open_clip's attentional pooling (CoCa towers) is not supported")
    tally = _Tally()
    conv = visual.conv1
    patches = (height // conv.stride[0]) * (width // conv.stride[1])
    tally.matmul(2.0 * images * patches * conv.weight.numel(), False, False)
    length = patches + 1  # the class token
    for block in visual.transformer.resblocks:
        for module in block.modules():
            if isinstance(module, nn.Linear):  # the MLP and attention's output projection
                tally.linear(module, images * length, input_grad=False)
            # Packed q/k/v projection: nn.MultiheadAttention's, or open_clip's own Attention's.
            packed = getattr(module, "in_proj_weight", None)
            if packed is not None:
                tally.matmul(2.0 * images * length * packed.numel(), False, False)
                tally.scores(images * length, length, packed.shape[1], grad=False)
    if visual.proj is not None:
        pooled = length if visual.pool_type == "none" else 1
        tally.matmul(2.0 * images * pooled * visual.proj.numel(), False, False)
    return tally


def _adapter(adapter: nn.Module, images: int, patches: int) -> tuple[_Tally, int]:
    """The adapter's tally and its visual tokens per image."""
    tally = _Tally()
    tokens = images * patches
    if isinstance(adapter, LinearAdapter):
        tally.linear(adapter.proj, tokens, input_grad=False)
        return tally, patches
    if isinstance(adapter, MLPAdapter):
        tally.linear(adapter.mlp.fc, tokens, input_grad=False)
        tally.linear(adapter.mlp.proj, tokens)
        return tally, patches
    if not isinstance(adapter, (PerceiverAdapter, VAdapter)):
        raise TypeError(f"FLOP count: unknown adapter {type(adapter).__name__}")
    tally.linear(adapter.proj_in, tokens, input_grad=False)
    queries = _resampler(tally, adapter.resampler, images, patches)
    if isinstance(adapter, VAdapter):
        tally.blocks(adapter.tiny_lm.blocks, images, queries)
    tally.linear(adapter.proj_out, images * queries)
    return tally, queries


def _resampler(tally: _Tally, resampler: PerceiverResampler, images: int, patches: int) -> int:
    """Learned queries attend to [vision tokens ; themselves]; returns the query count."""
    queries = resampler.latents.shape[0]
    for layer in resampler.layers:
        tally.attention(layer.attn, images, queries, patches + queries)
        tally.linear(layer.ffn.fc, images * queries)
        tally.linear(layer.ffn.proj, images * queries)
    return queries


def _llm(model: nn.Module, rows: int, length: int, logits: int) -> _Tally:
    """A dense transformers decoder (every linear layer runs once per position; mixture-of-experts
    layers would be over-counted) over `length` positions, with logits for `logits` of them."""
    tally = _Tally()
    head = model.get_output_embeddings()
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not head:
            tally.linear(module, rows * length)
    config = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    for _ in range(config.num_hidden_layers):
        tally.scores(rows * length, length, heads * head_dim)
    tally.linear(head, rows * logits)
    return tally
