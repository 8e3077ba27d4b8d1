"""Test helper: a tiny word-level tokenizer saved beside a tiny random Hugging Face model."""

from pathlib import Path

import transformers
from tokenizers import Tokenizer, models, pre_tokenizers


def save_word_tokenizer(path: Path, words) -> None:
    """Write a WordLevel tokenizer over `words` (ids 2.., with [UNK]=0 and [PAD]=1) into `path`."""
    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                         pad_token="[PAD]").save_pretrained(path)
