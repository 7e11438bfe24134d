"""Batches for each task, drawn deterministically from a seed: causal LM windows, masked LM
(BERT's 80/10/10 masking), images; one rank's rows of a global batch at a time."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from suite.data import images, shards
from suite.data.shards import Tokens
from suite.data.sources import DataError, ImageData, TextData

IGNORE_INDEX = -100  # a label no loss counts (PyTorch's cross_entropy default): unmasked positions
Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels); IGNORE_INDEX labels are ignored


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
    labels[~chosen] = IGNORE_INDEX
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
            try:
                x, y = next(self._folder)
            except images.ImageError as e:  # a damaged file, named: one line, not a traceback
                raise DataError(str(e)) from None
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
