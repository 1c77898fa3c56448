"""A tiny causal LM and tokenizer built at test time and saved like a real checkpoint
(save_pretrained), so tests load them through FrozenLLM's real path (from_pretrained)."""

from __future__ import annotations

from pathlib import Path

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SHAPES = ["circle", "square", "triangle", "star"]
WORDS = ["a", "an", "on", "the", "background", "describe", "following", ":", "of", "with", "small", "large"]


def caption_texts(n: int = 512, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [f"a {c} {s} on a {b} background" for c, b, s in
            ((*rng.sample(COLOURS, 2), rng.choice(SHAPES)) for _ in range(n))]


def write_tiny_llm(directory: Path, width: int = 32, layers: int = 2, seed: int = 0, pretrain_steps: int = 0,
                   max_positions: int = 256) -> str:
    """pretrain_steps > 0: first teach it the captions' language (as a real frozen LLM knows its
    language), so that what an adapter adds is the image's content."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<eos>", "<unk>", *WORDS, *COLOURS, *SHAPES])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=max_positions, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    model = LlamaForCausalLM(config)
    if pretrain_steps:
        ids = tokenizer([t + " <eos>" for t in caption_texts(seed=seed)], return_tensors="pt")["input_ids"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for step in range(pretrain_steps):
            batch = ids[(step * 64) % len(ids):][:64]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(directory)
    return str(directory)
