"""`python -m suite tokenize`: text -> token shards, once, with HF `tokenizers`.

Documents are read one at a time (text files: one document each; .jsonl: one per line;
.parquet: one per row, streamed in record batches by pyarrow), so memory holds one shard's
buffer whatever the corpus size. Document i (in the order read) is held out when
i % heldout_every == heldout_every - 1 (suite.data.split): whole documents, never windows.

Memory does not grow with a document's size: a document longer than PIECE_BYTES is encoded
in pieces (`pieces`), cut just before a space between two words, so that a byte-level
tokenizer (GPT-2's, Llama 3's) gives the very ids it gives the whole document; and pieces are
encoded BATCH_BYTES at a time. (A whole 40 MB line encoded at once took 6 GB, levanter#568.)
A text file is read PIECE_BYTES at a time, a .parquet file about PARQUET_BATCH_BYTES of rows
at a time; a .jsonl line is held whole.

Each document is preceded by a separator: the `separator` given, else the tokenizer's
end-of-text token where it has one (GPT-2's <|endoftext|>, as llm.c and modded-nanogpt do);
with neither, documents are joined with nothing between them, and tokenize says so. A .jsonl value
or .parquet cell must be a string: anything else is refused naming the file, row and key;
nulls are skipped and counted. Dot-files, dot-folders and files that are not text are
skipped and counted (suite.data.files). Options are checked before anything is read: a
trained BPE has at least MIN_BPE_VOCAB ids (the 256 bytes and <|endoftext|>), and fewer than
`heldout_every` documents are refused (before a tokenizer is trained, where every file is one
document), since then none would be held out.

Shards are llm.c `.bin` files (suite.data.shards reads them): `<name>_val_000000.bin`,
`<name>_train_000001.bin`, ...; `tokens.json` records the tokenizer file and its sha256, the
vocabulary, the separator, token, document and byte counts per split (bits per byte come from
the held-out bytes per token), the held-out documents, the nulls skipped, and which files
were read and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from suite.data import shards
from suite.data.documents import DOC_SUFFIXES, Document, Nulls, documents, sources
from suite.data.files import hidden
from suite.data.sources import DataError, read_note
from suite.data.split import HELDOUT_EVERY, is_heldout, rule
from suite.results import atomic_write

END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
RECORD = "tokens.json"
LISTED = 1000  # held-out document names listed in the record; the count is always exact
BATCH_BYTES = 1 << 21  # pieces encoded together: the tokenizer's memory is ~150x their size
BATCH_PIECES = 256
MIN_BPE_VOCAB = 257  # a byte-level BPE's 256 bytes and its <|endoftext|>: the smallest one


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
        """Append ids, writing a shard each time the buffer fills."""
        arr = np.asarray(ids, dtype=np.int64)
        while len(arr):
            take = min(len(arr), len(self.buf) - self.n)
            self.buf[self.n : self.n + take] = arr[:take]
            self.n, arr = self.n + take, arr[take:]
            if self.n == len(self.buf):
                self.flush()

    def flush(self) -> None:
        """Write what the buffer holds as one shard (nothing when empty)."""
        if not self.n:
            return
        magic, version = {2: (20240520, 1), 4: (20240801, 7)}[self.dtype.itemsize]
        header = np.zeros(shards.BIN_HEADER_INTS, dtype="<i4")
        header[:3] = magic, version, self.n
        path = self.out / f"{self.name}_{self.split}_{self.index:06d}.bin"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # this writer's own
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            # no copy on a little-endian machine: a shard's buffer is written as it is
            self.buf[: self.n].astype(self.dtype.newbyteorder("<"), copy=False).tofile(f)
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


def train_bpe(paths: list[Path], key: str, vocab_size: int, heldout_every: int) -> Any:
    """A byte-level BPE (GPT-2's scheme) trained with HF tokenizers on the training documents
    only (held-out documents are never seen), with <|endoftext|> as its special token. The
    trainer is fed pieces (`pieces`): its word counts are the whole documents'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT[0]],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = (piece for i, d in enumerate(documents(paths, key))
             if not is_heldout(i, heldout_every) for piece in d.pieces)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def sha256(path: Path) -> str:
    """The file's sha256, read 1 MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust error says what is wrong with the file
        raise DataError(f"{path}: not a tokenizers JSON file (tokenizer.json): {e}") from e


def separator_ids(tok: Any, tok_path: Path, separator: str | None) -> tuple[list[int],
                                                                            dict[str, Any]]:
    """The ids put before each document, and what they are, for the record. `separator` None:
    the tokenizer's end-of-text token (END_OF_TEXT), or nothing, said on stderr; a token of
    the vocabulary: its id; other text: its encoding; "": nothing, as asked."""
    if separator is None:
        eot = next((t for t in END_OF_TEXT if tok.token_to_id(t) is not None), None)
        if eot is not None:
            return [tok.token_to_id(eot)], {"text": eot, "ids": [tok.token_to_id(eot)],
                                            "how": "the tokenizer's end-of-text token"}
        print(f"tokenize: {tok_path} has none of the end-of-text tokens "
              f"{', '.join(END_OF_TEXT)}: documents are joined with nothing between them; "
              "name a separator with --separator TEXT (a token of its vocabulary, or text to "
              "encode), or --separator '' to keep this", file=sys.stderr)
        return [], {"text": None, "ids": [], "how": "none: the tokenizer has no end-of-text "
                    "token and no separator was given"}
    if (tid := tok.token_to_id(separator)) is not None:
        return [tid], {"text": separator, "ids": [tid], "how": "a token of the vocabulary"}
    ids = tok.encode(separator, add_special_tokens=False).ids
    if separator and not ids:
        raise DataError(f"--separator {separator!r}: {tok_path} encodes it to no ids; allowed: "
                        "a token of its vocabulary, text it encodes, or '' for none")
    return ids, {"text": separator, "ids": ids,
                 "how": "text, encoded" if ids else "none, as given"}


class _Encoder:
    """Pieces of documents in, ids out to the split's shard writer, in order: pieces are
    encoded together up to BATCH_BYTES (or BATCH_PIECES), never whole documents at once."""

    def __init__(self, tok: Any, prefix: list[int], writers: dict[str, ShardWriter],
                 splits: dict[str, Split]) -> None:
        self.encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: less
        self.prefix, self.writers, self.splits = prefix, writers, splits
        self.pending: list[tuple[str, bool, str]] = []  # (split, first piece?, text)
        self.size = 0

    def document(self, split: str, doc: Document) -> None:
        """Count `doc` in `split` and queue its pieces, encoding whenever a batch is full."""
        s = self.splits[split]
        s.documents, s.bytes = s.documents + 1, s.bytes + doc.bytes
        if split == "heldout" and len(s.names) < LISTED:
            s.names.append(doc.name)
        first = True
        for text in doc.pieces:
            self.pending.append((split, first, text))
            self.size, first = self.size + len(text), False
            if self.size >= BATCH_BYTES or len(self.pending) >= BATCH_PIECES:
                self.flush()

    def flush(self) -> None:
        """Encode the queued pieces and hand their ids, in order, to the shard writers."""
        if not self.pending:
            return
        encoded = self.encode([t for _, _, t in self.pending], add_special_tokens=False)
        for (split, first, _), enc in zip(self.pending, encoded, strict=True):
            ids = (self.prefix + enc.ids) if first else enc.ids
            self.writers[split].add(ids)
            self.splits[split].tokens += len(ids)
        self.pending, self.size = [], 0


def tokenize(source: str, out: Path, tokenizer: Path | None = None,
             bpe_vocab: int | None = None, key: str = "text",
             heldout_every: int = HELDOUT_EVERY, shard_tokens: int = 10**8, name: str = "tokens",
             separator: str | None = None) -> dict[str, Any]:
    """Tokenise every document of `source` with a tokenizer.json (`tokenizer`) or a byte-level
    BPE of `bpe_vocab` ids (at least MIN_BPE_VOCAB) trained here on the training documents;
    write shards of at most `shard_tokens` ids and the record (returned) into `out`, which must
    hold no shards yet. `separator` goes before each document (None: the tokenizer's
    end-of-text token, or nothing, said; `separator_ids`). Raises DataError naming the file
    or option and what is allowed (no documents, fewer than `heldout_every`, a bad tokenizer
    file, a missing or non-string text key, a vocabulary below MIN_BPE_VOCAB)."""
    _check_options(tokenizer, bpe_vocab, heldout_every, shard_tokens, name)
    paths, rec = sources(source)
    if len(paths) < heldout_every and not any(p.suffix.lower() in DOC_SUFFIXES for p in paths):
        # one document a file: refused before a tokenizer is trained or a shard written
        raise DataError(f"{source}: {len(paths)} document(s) in {rec['read']} file(s)"
                        f"{read_note(source, rec)}; {_too_few(heldout_every)}")
    out.mkdir(parents=True, exist_ok=True)
    if existing := sorted(p.name for p in out.iterdir() if p.suffix in shards.SUFFIXES):
        raise DataError(f"{out}: already holds shards ({', '.join(existing[:3])}, ...); "
                        "tokenise into an empty folder")
    if tokenizer is not None:
        tok, tok_path = _load_tokenizer(tokenizer), tokenizer
    else:
        asked = int(bpe_vocab or 0)  # at least MIN_BPE_VOCAB: _check_options
        tok, tok_path = train_bpe(paths, key, asked, heldout_every), out / "tokenizer.json"
        tok.save(str(tok_path))
        if (got := tok.get_vocab_size()) < asked:
            print(f"tokenize: --train-bpe {asked}: the training documents gave a vocabulary "
                  f"of {got} (the 256 bytes, <|endoftext|> and {got - MIN_BPE_VOCAB} merges: "
                  "no pair of tokens was left to merge)", file=sys.stderr)
    prefix, sep = separator_ids(tok, tok_path, separator)
    vocab = tok.get_vocab_size()
    dtype = np.dtype(np.uint16 if vocab <= 1 << 16 else np.uint32)
    writers = {"heldout": ShardWriter(out, name, "val", dtype, shard_tokens, 0),
               "train": ShardWriter(out, name, "train", dtype, shard_tokens, 1)}
    splits, nulls = {"train": Split(), "heldout": Split()}, Nulls()
    encoder = _Encoder(tok, prefix, writers, splits)
    for i, doc in enumerate(documents(paths, key, nulls)):
        encoder.document("heldout" if is_heldout(i, heldout_every) else "train", doc)
    encoder.flush()
    for w in writers.values():
        w.flush()
    _refuse_too_few(source, out, rec, heldout_every, splits, writers)
    record = _record(source, rec, tokenizer is None, tok_path, vocab, dtype, sep,
                     heldout_every, splits, writers)
    record["nulls"] = {"count": nulls.count, "first": nulls.names}
    if nulls.count:
        print(f"tokenize: {nulls.count} null value(s) of {key!r} skipped (first: "
              f"{', '.join(nulls.names[:3])})", file=sys.stderr)
    # last, atomically: a shard set without a whole tokens.json is visibly unfinished
    atomic_write(out / RECORD, lambda f: f.write(json.dumps(record, indent=1) + "\n"))
    return record


def _too_few(heldout_every: int) -> str:
    return (f"document i is held out when {rule(heldout_every)}, so at least {heldout_every} "
            "are needed (--heldout-every sets it)")


def _check_options(tokenizer: Path | None, bpe_vocab: int | None, heldout_every: int,
                   shard_tokens: int, name: str) -> None:
    """One line for the first option that is not allowed, before anything is read."""
    if tokenizer is None and bpe_vocab is None:
        raise DataError("give either --tokenizer FILE (a tokenizer.json) or --train-bpe VOCAB")
    if tokenizer is not None and bpe_vocab:  # 0 beside a tokenizer: a caller's "not given"
        raise DataError(f"--tokenizer {tokenizer} and --train-bpe {bpe_vocab}: give one of them")
    if tokenizer is None and (bpe_vocab is None or bpe_vocab < MIN_BPE_VOCAB):
        raise DataError(f"--train-bpe {bpe_vocab}: a byte-level BPE holds the 256 bytes and "
                        f"<|endoftext|>, so its vocabulary has at least {MIN_BPE_VOCAB} ids; "
                        f"allowed: an integer >= {MIN_BPE_VOCAB} (50257 is GPT-2's)")
    if heldout_every < 2:
        raise DataError(f"--heldout-every {heldout_every}: document i is held out when "
                        f"{rule(heldout_every)}; allowed: an integer >= 2")
    if shard_tokens < 1:
        raise DataError(f"--shard-tokens {shard_tokens}: ids per shard; allowed: an integer >= 1")
    if not name or "/" in name or os.sep in name or hidden(name) or "val" in name:
        raise DataError(f"--name {name!r}: the shards' file-name prefix; allowed: a non-empty "
                        "name without '/', not starting with '.' (dot-files are never read) and "
                        "without 'val' (a shard with 'val' in its name is read as held out)")


def _refuse_too_few(source: str, out: Path, rec: dict[str, Any], heldout_every: int,
                    splits: dict[str, Split], writers: dict[str, ShardWriter]) -> None:
    total = splits["train"].documents + splits["heldout"].documents
    read = f"{total} document(s) in {rec['read']} file(s){read_note(source, rec)}"
    if splits["heldout"].documents == 0:
        why = _too_few(heldout_every)
    elif splits["train"].tokens == 0 or splits["heldout"].tokens == 0:
        empty = "training" if splits["train"].tokens == 0 else "held-out"
        why = (f"the {empty} documents hold no text (0 tokens); allowed: documents with text "
               "(an empty file or value is a document of no tokens)")
    else:
        return
    for w in writers.values():  # no half-made shard set stays behind
        for f in w.files:
            (out / f).unlink()
    raise DataError(f"{source}: {read}; {why}")


def _record(source: str, read: dict[str, Any], trained: bool, tok_path: Path, vocab: int,
            dtype: np.dtype, sep: dict[str, Any], heldout_every: int, splits: dict[str, Split],
            writers: dict[str, ShardWriter]) -> dict[str, Any]:
    """tokens.json: what was read, with which tokenizer, and what each split holds."""
    eot = sep["text"] if sep["how"] == "the tokenizer's end-of-text token" else None
    return {
        "format": "llm.c .bin shards: 256 int32 header (magic, version, tokens), then ids",
        "source": source, "files": read,
        "tokenizer": {"file": str(tok_path), "sha256": sha256(tok_path), "vocab_size": vocab,
                      "trained_here": trained, "end_of_text": eot},
        "separator": sep,
        "dtype": str(dtype),
        "heldout_rule": f"document i held out when {rule(heldout_every)}",
        **{k: {"documents": s.documents, "tokens": s.tokens, "bytes": s.bytes,
               "shards": writers[k].files,
               **({"document_names": s.names, "names_listed": len(s.names)}
                  if k == "heldout" else {})}
           for k, s in splits.items()},
    }
