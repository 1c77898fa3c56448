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


FILLER = ["the", "of", "with", "small", "large"]
PROMPT = ("Describe the following:", ":")  # the trainer's default prompt, around its visual tokens


def context_examples(tokenizer, n: int, seed: int, max_filler: int) -> list[tuple[list[int], int]]:
    """(token ids, caption start) for "Describe the following: CONTEXT : CAPTION <eos>", where
    CONTEXT says "{colour} {shape} on {background}" with 0..max_filler filler words scattered
    around and between those words. A model trained on these must find and copy the scene from
    its context, wherever and however long it is, as real LLMs read what precedes a question."""
    import random

    rng = random.Random(seed)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    before, after = ids(PROMPT[0]), ids(PROMPT[1])
    out = []
    for _ in range(n):
        colour, background = rng.sample(COLOURS, 2)
        shape = rng.choice(SHAPES)
        scene = [colour, shape, "on", background]
        gaps = [[] for _ in range(len(scene) + 1)]
        for _ in range(rng.randint(0, max_filler)):
            rng.choice(gaps).append(rng.choice(FILLER))
        context = [w for gap, word in zip(gaps, scene + [None]) for w in (*gap, word) if w is not None]
        caption = ids(f"a {colour} {shape} on a {background} background") + [tokenizer.eos_token_id]
        prefix = before + ids(" ".join(context)) + after
        out.append((prefix + caption, len(prefix)))
    return out


def write_tiny_llm(directory: Path, width: int = 32, layers: int = 2, seed: int = 0, pretrain_steps: int = 0,
                   max_positions: int = 256, reads_context: int = 0) -> str:
    """pretrain_steps > 0: first teach it the captions' language (as a real frozen LLM knows its
    language), so that what an adapter adds is the image's content.
    reads_context > 0: pre-train instead on `context_examples` with up to that many filler words,
    loss on the caption only, so the frozen LLM can use what the adapter puts in its context."""
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
    if pretrain_steps and reads_context:
        _pretrain_on_contexts(model, tokenizer, pretrain_steps, seed, reads_context)
    elif pretrain_steps:
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


def _padded(examples: list[tuple[list[int], int]], pad_id: int) -> dict:
    """Right-padded model inputs with labels on the caption tokens only."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for i, (ids, start) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, start : len(ids)] = torch.tensor(ids[start:])
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _pretrain_on_contexts(model, tokenizer, steps: int, seed: int, max_filler: int, batch: int = 64) -> None:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * (1 - s / steps))
    for step in range(steps):
        # Short contexts in most batches, long ones in some: contexts of every length up to
        # max_filler at a quarter of the cost (a batch is as long as its longest example).
        longest = (8, 32, 128, max_filler)[step % 4]
        examples = context_examples(tokenizer, batch, seed * 1_000_003 + step, min(longest, max_filler))
        loss = model(**_padded(examples, tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()


def context_caption_loss(directory: str, max_filler: int, n: int = 64, seed: int = 999) -> float:
    """Mean caption-token loss of the saved LLM on n held-out contexts that state the scene in
    words: how well it reads its context (the ceiling an adapter can reach)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    with torch.no_grad():
        return float(model(**_padded(context_examples(tokenizer, n, seed, max_filler), tokenizer.pad_token_id)).loss)
