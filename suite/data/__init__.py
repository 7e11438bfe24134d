"""The data wing: where tokens and images come from (`sources`: Shakespeare, offline-en, a user's
text, token shards or images), how they are split into training and held-out sets, and the
batches each task draws from them (`batches`). `corpus`, `shards`, `images` and `tokenize` are
the formats under them; `split` is the one home of which items are held out, `files` of which
files of a folder are data. The names of `sources` and `batches` are re-exported here."""

from suite.data.batches import Batch, RankBatch, TrainBatches, heldout_batches
from suite.data.shards import Tokens
from suite.data.sources import (
    BUILTIN_IMAGES,
    BUILTIN_TEXT,
    BYTE_VOCAB,
    FASHION_MNIST_DIR,
    HELDOUT_EVERY,
    TEXT_SUFFIXES,
    DataError,
    ImageData,
    TextData,
    load_images,
    load_text,
    load_tokens,
    text_files,
)

__all__ = ["BUILTIN_IMAGES", "BUILTIN_TEXT", "BYTE_VOCAB", "FASHION_MNIST_DIR", "HELDOUT_EVERY",
           "TEXT_SUFFIXES", "Batch", "DataError", "ImageData", "RankBatch", "TextData", "Tokens",
           "TrainBatches", "heldout_batches", "load_images", "load_text", "load_tokens",
           "text_files"]
