"""`python -m suite tokenize`: text -> token shards, once, with HF `tokenizers`.

Documents are read one at a time (text files: one document each; .jsonl: one per line;
.parquet: one per row, streamed in record batches by pyarrow), so memory holds one shard's
buffer whatever the corpus size. Document i (in the order read) is held out when
i % heldout_every == heldout_every - 1: whole documents, never windows. Each document is
preceded by the tokenizer's end-of-text token where it has one (GPT-2's <|endoftext|>, as
llm.c and modded-nanogpt do). Shards are llm.c `.bin` files (suite.data.shards reads them):
`<name>_val_000000.bin`, `<name>_train_000001.bin`, ...; `tokens.json` records the tokenizer
file and its sha256, the vocabulary, token, document and byte counts per split (bits per byte
come from the held-out bytes per token), the held-out documents and which files were read and
skipped, by suffix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from suite.data import shards
from suite.data.sources import TEXT_SUFFIXES, DataError, text_files

DOC_SUFFIXES = (".jsonl", ".parquet")  # read as many documents, by the `field` key/column
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
RECORD = "tokens.json"
LISTED = 1000  # held-out document names listed in the record; the count is always exact


@dataclass
class Document:
    name: str  # file, file:line or file:row
    text: str
    bytes: int  # UTF-8 bytes of the text as stored, for bits per byte


def _sources(source: str) -> tuple[list[Path], dict[str, Any]]:
    """Files to read: a file, a glob, or a folder's text, .jsonl and .parquet files."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path], {"read": 1, "skipped": {}}
    files, rec = text_files(source, TEXT_SUFFIXES + DOC_SUFFIXES)  # a folder or a glob
    if not files:
        raise DataError(f"{source}: no such file or folder, and no file matches it as a glob")
    return files, rec


def documents(files: list[Path], key: str) -> Iterator[Document]:
    """Every document of `files`, in order. Raises DataError naming the file, line or row and
    the key for a .jsonl line or .parquet file without a string `key`."""
    for f in files:
        if f.suffix.lower() == ".jsonl":
            with open(f, encoding="utf-8") as lines:
                for i, line in enumerate(lines, 1):
                    if line.strip():
                        yield _json_document(f, i, line, key)
        elif f.suffix.lower() == ".parquet":
            yield from _parquet_documents(f, key)
        else:
            raw = f.read_bytes()
            yield Document(str(f), raw.decode("utf-8", errors="replace"), len(raw))


def _json_document(f: Path, line_no: int, line: str, key: str) -> Document:
    try:
        text = json.loads(line)[key]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{f}:{line_no}: no string under key {key!r} ({type(e).__name__}); "
                        "--field names the key that holds the text") from e
    if not isinstance(text, str):
        raise DataError(f"{f}:{line_no}: key {key!r} holds {type(text).__name__}, not text")
    return Document(f"{f}:{line_no}", text, len(text.encode("utf-8")))


def _parquet_documents(f: Path, key: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(f)
    if key not in table.schema_arrow.names:
        raise DataError(f"{f}: no column {key!r}; it has {', '.join(table.schema_arrow.names)}"
                        " (--field names the column that holds the text)")
    row = 0
    for batch in table.iter_batches(columns=[key], batch_size=1024):
        for text in batch.column(0).to_pylist():
            row += 1
            if text is not None:
                yield Document(f"{f}:{row}", str(text), len(str(text).encode("utf-8")))


class ShardWriter:
    """Buffers ids of one split and writes a shard of `size` ids whenever the buffer fills;
    each file is written under a temporary name and renamed (a crash leaves no half shard)."""

    def __init__(self, out: Path, name: str, split: str, dtype: np.dtype, size: int,
                 first_index: int) -> None:
        self.out, self.name, self.split, self.dtype = out, name, split, dtype
        self.buf, self.n, self.index = np.empty(size, dtype=dtype), 0, first_index
        self.files: list[str] = []
        self.tokens = 0

    def add(self, ids: list[int]) -> None:
        arr = np.asarray(ids, dtype=np.int64)
        while len(arr):
            take = min(len(arr), len(self.buf) - self.n)
            self.buf[self.n : self.n + take] = arr[:take]
            self.n, arr = self.n + take, arr[take:]
            if self.n == len(self.buf):
                self.flush()

    def flush(self) -> None:
        if not self.n:
            return
        magic, version = {2: (20240520, 1), 4: (20240801, 7)}[self.dtype.itemsize]
        header = np.zeros(shards.BIN_HEADER_INTS, dtype="<i4")
        header[:3] = magic, version, self.n
        path = self.out / f"{self.name}_{self.split}_{self.index:06d}.bin"
        tmp = path.with_suffix(".bin.tmp")
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(self.buf[: self.n].astype(self.dtype.newbyteorder("<")).tobytes())
        os.replace(tmp, path)
        self.files.append(path.name)
        self.tokens += self.n
        self.index, self.n = self.index + 1, 0


@dataclass
class Split:
    documents: int = 0
    tokens: int = 0
    bytes: int = 0
    names: list[str] = field(default_factory=list)


def train_bpe(files: list[Path], key: str, vocab_size: int, heldout_every: int) -> Any:
    """A byte-level BPE (GPT-2's scheme) trained with HF tokenizers on the training documents
    only (held-out documents are never seen), with <|endoftext|> as its special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT[0]],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = (d.text for i, d in enumerate(documents(files, key))
             if i % heldout_every != heldout_every - 1)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _batched(items: Iterator[Any], n: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _load_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust error says what is wrong with the file
        raise DataError(f"{path}: not a tokenizers JSON file (tokenizer.json): {e}") from e


def tokenize(source: str, out: Path, tokenizer: Path | None = None, bpe_vocab: int = 0,
             key: str = "text", heldout_every: int = 10, shard_tokens: int = 10**8,
             name: str = "tokens") -> dict[str, Any]:
    """Tokenise every document of `source` with a tokenizer.json (`tokenizer`) or a byte-level
    BPE of `bpe_vocab` ids trained here on the training documents; write shards of at most
    `shard_tokens` ids and the record (returned) into `out`, which must hold no shards yet.
    Raises DataError naming the file and what is wrong (no documents, fewer than
    `heldout_every`, a bad tokenizer file, a missing text key)."""
    if (tokenizer is None) == (bpe_vocab <= 0):
        raise DataError("give either --tokenizer FILE (a tokenizer.json) or --train-bpe VOCAB")
    if heldout_every < 2 or shard_tokens < 1:
        raise DataError(f"--heldout-every {heldout_every} (need >= 2), --shard-tokens "
                        f"{shard_tokens} (need >= 1)")
    files, rec = _sources(source)
    out.mkdir(parents=True, exist_ok=True)
    if existing := sorted(p.name for p in out.iterdir() if p.suffix in shards.SUFFIXES):
        raise DataError(f"{out}: already holds shards ({', '.join(existing[:3])}, ...); "
                        "tokenise into an empty folder")
    if tokenizer is not None:
        tok, tok_path = _load_tokenizer(tokenizer), tokenizer
    else:
        tok, tok_path = train_bpe(files, key, bpe_vocab, heldout_every), out / "tokenizer.json"
        tok.save(str(tok_path))
    vocab = tok.get_vocab_size()
    dtype = np.dtype(np.uint16 if vocab <= 1 << 16 else np.uint32)
    eot = next((t for t in END_OF_TEXT if tok.token_to_id(t) is not None), None)
    prefix = [tok.token_to_id(eot)] if eot else []
    writers = {"heldout": ShardWriter(out, name, "val", dtype, shard_tokens, 0),
               "train": ShardWriter(out, name, "train", dtype, shard_tokens, 1)}
    splits = {"train": Split(), "heldout": Split()}
    for chunk in _batched(enumerate(documents(files, key)), 256):
        encoded = tok.encode_batch([d.text for _, d in chunk], add_special_tokens=False)
        for (i, doc), enc in zip(chunk, encoded, strict=True):
            split = "heldout" if i % heldout_every == heldout_every - 1 else "train"
            ids = prefix + enc.ids
            writers[split].add(ids)
            s = splits[split]
            s.documents, s.tokens, s.bytes = s.documents + 1, s.tokens + len(ids), \
                s.bytes + doc.bytes
            if split == "heldout" and len(s.names) < LISTED:
                s.names.append(doc.name)
    for w in writers.values():
        w.flush()
    total = splits["train"].documents + splits["heldout"].documents
    if splits["heldout"].documents == 0 or splits["train"].tokens == 0:
        for w in writers.values():  # no half-made shard set stays behind
            for f in w.files:
                (out / f).unlink()
        raise DataError(f"{source}: {total} document(s) read ({_read_text(rec)}); document i is "
                        f"held out when i % {heldout_every} == {heldout_every - 1}, so at least "
                        f"{heldout_every} are needed (--heldout-every sets it)")
    record = _record(source, rec, tokenizer is None, tok_path, vocab, dtype, eot,
                     heldout_every, splits, writers)
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def _record(source: str, files: dict[str, Any], trained: bool, tok_path: Path, vocab: int,
            dtype: np.dtype, eot: str | None, heldout_every: int, splits: dict[str, Split],
            writers: dict[str, ShardWriter]) -> dict[str, Any]:
    """tokens.json: what was read, with which tokenizer, and what each split holds."""
    return {
        "format": "llm.c .bin shards: 256 int32 header (magic, version, tokens), then ids",
        "source": source, "files": files,
        "tokenizer": {"file": str(tok_path), "sha256": sha256(tok_path), "vocab_size": vocab,
                      "trained_here": trained, "end_of_text": eot},
        "dtype": str(dtype),
        "heldout_rule": f"document i held out when i % {heldout_every} == {heldout_every - 1}",
        **{k: {"documents": s.documents, "tokens": s.tokens, "bytes": s.bytes,
               "shards": writers[k].files,
               **({"document_names": s.names, "names_listed": len(s.names)}
                  if k == "heldout" else {})}
           for k, s in splits.items()},
    }


def _read_text(rec: dict[str, Any]) -> str:
    skipped = ", ".join(f"{n} {s}" for s, n in sorted(rec.get("skipped", {}).items()))
    return f"{rec['read']} file(s) read" + (f", skipped {skipped}" if skipped else "")
