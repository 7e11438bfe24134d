"""Images streamed from a class-per-folder tree (ImageNet's layout) at constant memory (issue 13).

torchvision's ImageFolder finds the files and classes; a DataLoader with worker processes reads
and transforms them; the transforms are timm's own factory (`timm.data.create_transform`), as
DeiT builds them, chosen by the definition's `data.augment`:

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
(sorted) is held out when i % 10 == 9, as for every folder source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HELDOUT_EVERY = 10
AUGMENTS = ("none", "deit")
RAND_AUGMENT = "rand-m9-mstd0.5-inc1-mmax9"  # DeiT's, clipped at 9 (see the module docstring)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageError(ValueError):
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

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def transform(self, training: bool) -> Any:
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
    """The tree at `path`: classes are its subfolders (at least 2), labels their sorted order.
    `image_size` 0 takes the first image's (square) size. Raises ImageError naming the folder
    or file for fewer than 2 classes, a class without an image, or an unreadable first image;
    and naming `data.augment` for an unknown recipe."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets import ImageFolder

    if augment not in AUGMENTS:
        raise ImageError(f"data.augment = {augment!r}; allowed: {', '.join(AUGMENTS)}")
    try:
        tree = ImageFolder(str(path), allow_empty=True)
    except (FileNotFoundError, OSError) as e:
        raise ImageError(f"{path}: expected one subfolder per class ({e})") from e
    if len(tree.classes) < 2:
        raise ImageError(f"{path}: expected one subfolder per class (at least 2), found "
                         f"{tree.classes}")
    by_class: dict[int, list[str]] = {}
    for file, label in tree.samples:
        by_class.setdefault(label, []).append(file)
    if empty := [c for i, c in enumerate(tree.classes) if i not in by_class]:
        raise ImageError(f"{path}: class folder(s) {empty} hold no image "
                         f"({', '.join(tree.extensions)})")
    train, held = [], []
    for label, files in sorted(by_class.items()):
        for i, f in enumerate(sorted(files)):
            (held if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append((f, label))
    try:
        with Image.open(train[0][0]) as first:
            mode, size = first.mode, first.size
    except (OSError, UnidentifiedImageError) as e:
        raise ImageError(f"{train[0][0]}: not a readable image ({e})") from e
    channels = 1 if mode in ("L", "1", "I", "I;16", "F") else 3
    return FolderImages(path, list(tree.classes), train, held, channels,
                        image_size or min(size), augment, workers,
                        f"{source} ({len(tree.classes)} classes, {len(train)}/{len(held)} "
                        "images, streamed)")


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
        with Image.open(file) as img:
            x = self.tf(img.convert("L" if self.images.channels == 1 else "RGB"))
        return x, label


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
        x, y = next(self._it)
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
                         " images (file i of a class is held out when i % 10 == 9)")
    ds = _Dataset(images, files, False)
    items = [ds[(i, 0)] for i in spread(len(files), min(n, len(files))).tolist()]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
