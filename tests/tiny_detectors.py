"""Tiny OWL-ViT and OWLv2 detectors built from transformers configs at test time and saved with
save_pretrained, so tests load them through the same path users' downloaded models take. Random
weights: for plumbing only (the product never runs random weights: no directory without weights loads)."""

from __future__ import annotations

import json
from pathlib import Path


def clip_tokenizer(directory: Path):
    """A byte-level CLIP tokenizer: 256 byte symbols, their word-final forms, two specials, no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16), len(vocab)


def build_owl(directory: Path, family: str) -> Path:
    import torch
    from transformers import (Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor, OwlViTConfig,
                              OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor)

    tokenizer, vocab_size = clip_tokenizer(directory / "tokenizer-src")
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
                pad_token_id=vocab_size - 1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=16)
    torch.manual_seed(0)
    if family == "owlv2":
        model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32))
        processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
                                   tokenizer=tokenizer)
    else:
        model = OwlViTForObjectDetection(OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32))
        processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(
            size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64}), tokenizer=tokenizer)
    out = directory / family
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_grounding_dino(directory: Path) -> Path:
    import torch
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    directory.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *"abcdefghijklmnopqrstuvwxyz",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"), model_max_length=64)
    backbone = SwinConfig(image_size=256, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                                 decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                                 encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=4,
                                 max_text_len=64, encoder_n_points=2, decoder_n_points=2, use_timm_backbone=False,
                                 use_pretrained_backbone=False)
    torch.manual_seed(0)
    out = directory / "grounding-dino"
    GroundingDinoForObjectDetection(config).eval().save_pretrained(out)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(
        size={"shortest_edge": 256, "longest_edge": 256}), tokenizer=tokenizer).save_pretrained(out)
    return out
