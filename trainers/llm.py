"""The frozen LLM and its tokenizer, loaded with transformers from a local path or hub id, GGUF included.

Frozen means: no parameter gets a gradient, and it runs in eval mode; gradients still flow through
it to its input embeddings, which is how the adapter learns.
"""

from __future__ import annotations

import torch
from torch import nn


def _not_loaded(path: str, gguf_file: str | None, err: Exception, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"llm.path {path!r}{' / ' + gguf_file if gguf_file else ''} could not be loaded ({err}); "
                             f"give a local directory ({what}) or a hub id reachable from here")


def load_tokenizer(path: str, gguf_file: str | None = None):
    """The LLM's tokenizer alone (no weights): what the stage-1 captioner needs, so a tokenizer-only
    directory will do. A tokenizer without a pad token pads with EOS."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))
    except OSError as err:
        raise _not_loaded(path, gguf_file, err, "with the tokenizer's files") from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class FrozenLLM(nn.Module):
    def __init__(self, path: str, gguf_file: str | None = None, dtype: str = "float32"):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(path, gguf_file)
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
        except OSError as err:
            raise _not_loaded(path, gguf_file, err, "config + weights + tokenizer") from err
        self.model.requires_grad_(False)
        self.model.eval()
        self.width = self.model.get_input_embeddings().embedding_dim
        self.vocab_size = self.model.get_input_embeddings().num_embeddings

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits


def silence_progress_bars() -> None:
    """--quiet: transformers ("Loading weights") and the hub client draw their own bars; turn them off
    for this process (a CLI flag's job, so the library functions never touch this global state)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()
