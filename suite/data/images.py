"""Images streamed from a class-per-folder tree (ImageNet's layout) at constant memory (issue 13).

Files and classes are found as torchvision's ImageFolder finds them; a DataLoader with worker
processes reads and transforms them; the transforms are timm's own factory
(`timm.data.create_transform`), as DeiT builds them, chosen by the definition's `data.augment`:

- "none": resize (bicubic) to `image_size` and centre crop, normalised to [-1, 1] like the
  in-memory sources;
- "deit": DeiT's training recipe (RandAugment rand-m9-mstd0.5-inc1, colour jitter 0.3, random
  erasing 0.25 in pixel mode, bicubic random resized crop, ImageNet mean and std); evaluation
  resizes and centre-crops at 0.875. One deviation: the noisy magnitude is clipped at 9, not
  10 (`mmax9`), since at 10 timm's increasing posterize keeps 0 bits, which Pillow 13 refuses
  ("bits must be between or equal to 1 and 8").

Nothing but the prefetch queue is held in memory. The batch order is a pure function of
(seed, batch number): epoch e's order is a permutation seeded by (seed, e) and each image's
augmentation is seeded by (seed, e, index), so a stream restarted at batch b (a resumed run)
yields the very batches it would have, whatever the number of workers. File i of each class
(sorted) is held out when i % 10 == 9, as for every folder source (suite.data.split).

Dot-files and dot-folders are not images (a `.ipynb_checkpoints` folder is no class, macOS's
`._x.png` no image; suite.data.files). Every image is opened and verified at load (its header,
and for a PNG every chunk's checksum; a JPEG without its end marker is decoded), so a damaged
file is one line naming it before training; what that cannot catch is an ImageError naming
the file when it is read, in a DataLoader worker too.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.data.files import HIDDEN, LISTED, hidden, walk
from suite.data.split import rule, split_items
from suite.errors import SuiteError

AUGMENTS = ("none", "deit")
RAND_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"  # DeiT's, clipped at 9 (see the module docstring)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageError(SuiteError, ValueError):
    """An image tree that cannot be used; the message names the folder or file."""


@dataclass
class FolderImages:
    """A class-per-folder tree, split into training and held-out files, and what the model is
    fed: `channels` x `image_size` x `image_size` after the transform."""

    root: Path
    classes: list[str]
    train: list[tuple[str, int]]  # (file, label)
    heldout: list[tuple[str, int]]
    channels: int
    image_size: int
    augment: str
    workers: int
    source: str
    files: dict[str, Any] = field(default_factory=dict)  # what the tree gave: read/skipped

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def transform(self, training: bool) -> Any:
        """timm's transform for this tree's recipe (`augment`), for training or evaluation."""
        from timm.data import create_transform

        size = (self.channels, self.image_size, self.image_size)
        if self.augment == "deit":
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.channels == 3 else \
                ((0.5,), (0.5,))
            if training:
                return create_transform(size, is_training=True, color_jitter=0.3,
                                        auto_augment=RAND_AUGMENT,
                                        interpolation="bicubic", re_prob=0.25, re_mode="pixel",
                                        re_count=1, mean=mean, std=std)
            return create_transform(size, interpolation="bicubic", crop_pct=0.875, mean=mean,
                                    std=std)
        half = (0.5,) * self.channels
        return create_transform(size, interpolation="bicubic", crop_pct=1.0, mean=half,
                                std=half)


def open_folder(path: Path, source: str, image_size: int, augment: str,
                workers: int) -> FolderImages:
    """The tree at `path`: classes are its subfolders (at least 2, not dot-folders), labels
    their sorted order. `image_size` 0 takes the first image's (square) size. Raises ImageError
    naming the folder or file for fewer than 2 classes, a class without an image, or an
    image that cannot be read (`unreadable`); and naming `data.augment` for an unknown
    recipe."""
    if augment not in AUGMENTS:
        raise ImageError(f"data.augment = {augment!r}; allowed: {', '.join(AUGMENTS)}")
    classes, by_class, record = _tree(path)
    train, held = [], []
    for label in range(len(classes)):
        tr, he = split_items(sorted(by_class[label]), last_if_none=False)
        train += [(f, label) for f in tr]
        held += [(f, label) for f in he]
    _refuse_unreadable(path, [f for f, _ in train + held], workers)
    from PIL import Image

    with Image.open(train[0][0]) as first:
        mode, size = first.mode, first.size
    channels = 1 if mode in ("L", "1", "I", "I;16", "F") else 3
    return FolderImages(path, classes, train, held, channels, image_size or min(size), augment,
                        workers, f"{source} ({len(classes)} classes, {len(train)}/{len(held)} "
                        "images, streamed)", record)


def _tree(path: Path) -> tuple[list[str], dict[int, list[str]], dict[str, Any]]:
    """Classes, each class's image files (as strings, as torchvision's ImageFolder lists them)
    and a record of what was read and skipped. Dot-folders are no class; dot-files, files in
    dot-folders and files of another suffix are no image."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise ImageError(f"{path}: expected one subfolder per class ({e})") from e
    classes = sorted(e.name for e in entries if e.is_dir() and not hidden(e.name))
    passed = sum(e.is_dir() and hidden(e.name) for e in entries)
    if len(classes) < 2:
        raise ImageError(f"{path}: expected one subfolder per class (at least 2), found "
                         f"{classes}")
    by_class: dict[int, list[str]] = {}
    skipped: dict[str, int] = {}
    for label, name in enumerate(classes):
        found, hid = walk(path / name)
        passed += hid
        by_class[label] = [str(p) for p in found if p.suffix.lower() in IMG_EXTENSIONS]
        for p in found:
            if p.suffix.lower() not in IMG_EXTENSIONS:
                skipped[p.suffix or "(none)"] = skipped.get(p.suffix or "(none)", 0) + 1
    if empty := [c for i, c in enumerate(classes) if not by_class[i]]:
        raise ImageError(f"{path}: class folder(s) {empty} hold no image "
                         f"({', '.join(IMG_EXTENSIONS)})")
    if passed:
        skipped[HIDDEN] = passed
    return classes, by_class, {"read": sum(map(len, by_class.values())), "skipped": skipped}


def unreadable(file: str) -> str | None:
    """Why an image file cannot be read, or None. Its header is parsed and verified (for a PNG,
    every chunk's CRC through IEND); a JPEG whose last bytes are not its end marker (a
    truncated download) is decoded whole, since only decoding tells truncation from trailing
    data a camera appended."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            kind = img.format
            img.verify()
        if kind == "JPEG" and not _ends_with_eoi(file):
            with Image.open(file) as img:
                img.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        return f"{type(e).__name__}: {e}"
    return None


def _ends_with_eoi(file: str) -> bool:
    with open(file, "rb") as f:
        f.seek(max(os.fstat(f.fileno()).st_size - 2, 0))
        return f.read(2) == b"\xff\xd9"


def _refuse_unreadable(path: Path, paths: list[str], workers: int) -> None:
    """ImageError naming the damaged files (the first LISTED) and their count: before
    training, where a damaged file cost nothing yet. Threads overlap the reads."""
    with ThreadPoolExecutor(max(1, min(8, workers * 2))) as pool:
        bad = [(f, why) for f, why in zip(paths, pool.map(unreadable, paths), strict=True)
               if why is not None]
    if bad:
        named = "; ".join(f"{f} ({why})" for f, why in bad[:LISTED])
        raise ImageError(f"{path}: {len(bad)} image(s) cannot be read: {named}"
                         + ("; ..." if len(bad) > LISTED else "") + "; remove or replace them")


class _Dataset(torch.utils.data.Dataset):
    """Items are (index, augmentation seed): the transform's randomness is the seed's alone."""

    def __init__(self, images: FolderImages, files: list[tuple[str, int]],
                 training: bool) -> None:
        self.images, self.files = images, files
        self.tf = images.transform(training)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, seed = item
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        file, label = self.files[index]
        try:
            with Image.open(file) as img:
                pixels = img.convert("L" if self.images.channels == 1 else "RGB")  # decodes
        except Exception as e:  # whatever PIL raises for a damaged file: name the file
            raise ImageError(f"{file}: not a readable image ({type(e).__name__}: {e})") from None
        return self.tf(pixels), label


def worker_message(e: ImageError) -> str:
    """The one line a DataLoader worker raised: the loader re-raises it in the main process
    as "Caught ImageError in DataLoader worker process 0. Original Traceback ..." ending in
    "...ImageError: <the line>"."""
    last = str(e).rstrip().splitlines()[-1] if str(e).strip() else ""
    return last.split("ImageError: ", 1)[1] if "ImageError: " in last else last


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


class FolderStream:
    """Endless training batches of a FolderImages, resumable at any batch (`batch`); with
    `rows`, only those rows of each global batch are read (one rank's share)."""

    def __init__(self, images: FolderImages, batch_size: int, seed: int,
                 rows: slice = slice(None)) -> None:
        if len(images.train) < batch_size:
            raise ImageError(f"{images.root}: {len(images.train)} training images, fewer than "
                             f"one batch of {batch_size}")
        self.images, self.bs, self.seed, self.rows = images, batch_size, seed, rows
        self.per_epoch = len(images.train) // batch_size  # an incomplete last batch is dropped
        self.batch = 0
        self._it: Any = None

    def _indices(self, start: int):  # noqa: ANN202
        b = start
        while True:
            epoch, k = divmod(b, self.per_epoch)
            g = torch.Generator().manual_seed(_seed(self.seed, epoch))
            order = torch.randperm(len(self.images.train), generator=g)
            for j in range(k, self.per_epoch):
                idx = order[j * self.bs : (j + 1) * self.bs][self.rows].tolist()
                yield [(i, _seed(self.seed, epoch, i)) for i in idx]  # this rank's files only
            b = (epoch + 1) * self.per_epoch

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            loader = torch.utils.data.DataLoader(
                _Dataset(self.images, self.images.train, True),
                batch_sampler=self._indices(self.batch), num_workers=self.images.workers,
                persistent_workers=self.images.workers > 0)
            self._it = iter(loader)
        try:
            x, y = next(self._it)
        except ImageError as e:
            self._it = None  # the workers are shut down; a retry starts at this batch
            raise ImageError(worker_message(e)) from None
        self.batch += 1
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {"batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch, self._it = int(state["batch"]), None


def fixed_batches(images: FolderImages, split: str, batch_size: int, n: int,
                  spread: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """n images evenly spread over a split, through the evaluation transform (no randomness)."""
    files = images.heldout if split == "heldout" else images.train
    if not files:
        raise ImageError(f"{images.root}: no {'held-out' if split == 'heldout' else 'training'}"
                         f" images (file i of a class is held out when {rule()})")
    ds = _Dataset(images, files, False)
    items = [ds[(i, 0)] for i in spread(len(files), min(n, len(files))).tolist()]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
