"""The captioner's tokenizer: word level, its vocabulary the words of the clean set's captions.

PaLM2-VAdapter's stage-1 tiny LM has a vocabulary of its own; the trainer's captioner takes any
tokenizer directory (trainers/build.py). A 49k-entry BPE vocabulary (SmolLM2's) would spend most of
a CPU step in the output softmax over words this world never uses; the clean set's ~60 words keep the
experiment on 2 CPU cores in its budget. Words outside it (the pool's German captions, boilerplate)
become <unk>, as a small real vocabulary would make them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def write_word_tokenizer(directory: str | Path, texts: list[str]) -> str:
    """A transformers tokenizer directory (save_pretrained) over the words of `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    splitter = pre_tokenizers.Whitespace()
    words = Counter(word for text in texts for word, _ in splitter.pre_tokenize_str(text))
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate([*specials, *sorted(words)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, "x ," -> "x,"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<pad>",
                                        unk_token="<unk>")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return str(directory)


def clean_captions(shard_glob: str) -> list[str]:
    """Every caption (KEY.txt) of the clean set's shards."""
    import fsspec

    from manifests.shard_format import iter_tar_records
    from manifests.storage import glob_files

    texts = []
    for url in glob_files(shard_glob):
        with fsspec.open(url, "rb") as f:
            texts += [r.parts["txt"].decode("utf-8") for r in iter_tar_records(f, 1 << 24) if "txt" in r.parts]
    return texts
