"""The data wing: where tokens and images come from (`sources`: Shakespeare, offline-en, a user's
text, token shards or images), how they are split into training and held-out sets, and the
batches each task draws from them (`batches`). `corpus`, `shards`, `images` and `tokenize` are
the formats under them; `split` is the one home of which items are held out, `files` of which
files of a folder are data. The names of `sources` and `batches` are re-exported here, loaded
on first use: importing the package (or its torch-free modules, `corpus`, `split`, `files`)
does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_FROM = {
    "batches": ("Batch", "RankBatch", "TrainBatches", "heldout_batches"),
    "shards": ("Tokens",),
    "sources": ("BUILTIN_IMAGES", "BUILTIN_TEXT", "BYTE_VOCAB", "FASHION_MNIST_DIR",
                "HELDOUT_EVERY", "TEXT_SUFFIXES", "DataError", "ImageData", "TextData",
                "load_images", "load_text", "load_tokens", "text_files"),
}
_MODULE_OF = {name: module for module, names in _FROM.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:  # PEP 562: the re-exports, imported when first asked for
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'suite.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"suite.data.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
