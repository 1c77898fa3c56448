"""Sequence lengths, checked before anything trains.

The tiny LM and the frozen LLM each have a fixed number of positions. A sequence longer than that
fails deep inside the first forward pass (a traceback after minutes of loading), or, with rotary
positions, runs silently where the model was never trained. Each check here names the config keys
that make up the length, the numbers, and the change that fixes it, in one line.

The tiny LM's check needs the config alone (TrainConfig.validate, at config load); the LLM's needs
its position count, the prompt's token count and the vision tower's patch count (build_model).
"""

from __future__ import annotations


def tiny_lm_problem(config) -> str | None:
    """Stage 1 feeds the tiny LM [pooled visual tokens ; caption]; the stage-2 vadapter feeds it the
    perceiver's visual queries alone. Other adapters have no tiny LM."""
    a, c = config.adapter, config.data
    limit = a.tiny_lm.max_len
    if config.run.stage == "captioner":
        total = a.queries + c.max_caption_tokens
        if total > limit:
            return (f"run.stage: captioner feeds the tiny LM adapter.queries={a.queries} visual tokens + "
                    f"data.max_caption_tokens={c.max_caption_tokens} caption tokens = {total}, more than its "
                    f"adapter.tiny_lm.max_len={limit} positions: lower adapter.queries or "
                    f"data.max_caption_tokens (by {total - limit} together), or set adapter.tiny_lm.max_len "
                    f">= {total}")
    elif a.kind == "vadapter" and a.queries > limit:
        return (f"adapter.kind: vadapter feeds its tiny LM adapter.queries={a.queries} visual queries, more than "
                f"its adapter.tiny_lm.max_len={limit} positions: set adapter.queries <= {limit} or "
                f"adapter.tiny_lm.max_len >= {a.queries}")
    return None


def llm_positions(hf_config) -> int | None:
    """How many positions a transformers model was built (and trained) for; None when it does not say."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(hf_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def llm_problem(config, prompt_tokens: int, patch_tokens: int, positions: int | None) -> str | None:
    """Stage 2's LLM reads [prompt ; visual tokens ; caption] (and generates the caption at eval):
    prompt tokens + the adapter's visual tokens + data.max_caption_tokens must fit its positions."""
    if positions is None:
        return None
    a, caption = config.adapter, config.data.max_caption_tokens
    room = positions - prompt_tokens - caption  # what is left for visual tokens
    queries = f"adapter.queries <= {room}" if room > 0 else "fewer adapter.queries"
    if a.kind in ("linear", "mlp"):  # one visual token per patch of the vision tower, all kept
        visual = patch_tokens
        source = f"one per patch of vision.name {config.vision.name}, all kept by adapter.kind: {a.kind}"
        fix = f"use adapter.kind: perceiver or vadapter with {queries}"
    else:
        visual, source, fix = a.queries, "adapter.queries", f"set {queries}"
    total = prompt_tokens + visual + caption
    if total <= positions:
        return None
    return (f"the LLM reads {prompt_tokens} prompt tokens (data.prompt) + {visual} visual tokens ({source}) + up to "
            f"{caption} caption tokens (data.max_caption_tokens) = {total}, more than the {positions} positions "
            f"of the model at llm.path: {fix}, or lower data.max_caption_tokens or shorten data.prompt")
