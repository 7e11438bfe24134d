"""Token ids at any size: shards read in their stored dtype, never copied whole.

A `Tokens` is an ordered list of 1-D integer shards (arrays in memory, or `ShardFile`s: a
file's place and size, read with pread) read as windows that never cross a shard boundary.
What a batch needs is copied out window by window, so resident memory stays at the windows
drawn, whatever the corpus size, and open files stay at MAX_OPEN, whatever the shard count.
Every index and count is an int64 (numpy or torch), never a float: a float32 counts exactly to
16.7M only, and a 10B-token corpus needs 34 bits.

Files read (`open_tokens`):
- `.npy`: a 1-D array of any integer dtype (its header read by numpy.lib.format);
- `.bin`: llm.c / modded-nanogpt shards, a header of 256 int32 (magic, version, token count)
  then the tokens: uint16 for magic 20240520 version 1 (GPT-2), uint32 for magic 20240801
  version 7 (Llama 3); a `.bin` without that header is nanoGPT's raw uint16 (prepare.py);
- a folder (its .npy and .bin files, sorted by name; dot-files such as macOS's `._x.bin`
  skipped) or a glob pattern (which matches no dot-file unless its own part starts with '.').
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from suite.data.files import HIDDEN, globbed, hidden, is_glob
from suite.data.split import tail_cut
from suite.errors import SuiteError

BIN_HEADER_INTS = 256
BIN_FORMATS = {(20240520, 1): np.dtype(np.uint16), (20240801, 7): np.dtype(np.uint32)}
SUFFIXES = (".npy", ".bin")
SCAN_CHUNK = 1 << 24  # tokens per read while checking ids: 32-64 MB, whatever the file size
MAX_OPEN = 64  # shard files kept open for reading windows, over every Tokens of the process


class ShardError(SuiteError, ValueError):
    """A token file that cannot be used; the message names the file and what is expected."""


@dataclass(frozen=True)
class ShardFile:
    """A token file's ids by place alone: file, byte offset of the first id, dtype, count.

    No memory map and no open file is held: each map keeps a file descriptor, and 1,000
    shards exhausted the common limit of 1024 ("Too many open files", litData#366). Ids are
    read with `pread` through a small shared cache of descriptors (`_descriptor`)."""

    path: Path
    offset: int
    dtype: np.dtype
    length: int
    ndim = 1  # read like a 1-D array by what checks parts

    def __len__(self) -> int:
        return self.length

    def slice(self, start: int, stop: int) -> ShardFile:
        """Ids start .. stop - 1 of this shard, as a shard of their own (no read)."""
        return ShardFile(self.path, self.offset + start * self.dtype.itemsize, self.dtype,
                         stop - start)

    def read(self, start: int, count: int) -> np.ndarray:
        """Ids start .. start + count - 1, in the stored dtype. Raises ShardError naming the
        file when it cannot be read or holds fewer bytes than its header said."""
        size = self.dtype.itemsize
        try:
            raw = os.pread(_descriptor(self.path), count * size, self.offset + start * size)
        except OSError as e:
            raise ShardError(_os_message(self.path, e)) from e
        if len(raw) != count * size:
            raise ShardError(f"{self.path}: ended at byte {self.offset + start * size + len(raw)}"
                             f" while reading {count} ids: the file shrank after it was opened")
        return np.frombuffer(raw, dtype=self.dtype)


_OPEN: OrderedDict[Path, int] = OrderedDict()  # path -> descriptor, least recently used first


def _descriptor(path: Path) -> int:
    """An open descriptor of `path`, from a cache of at most MAX_OPEN over every Tokens of the
    process: the least recently used one is closed first, so any number of shards stays far
    below the open-file limit."""
    if path in _OPEN:
        _OPEN.move_to_end(path)
        return _OPEN[path]
    while len(_OPEN) >= MAX_OPEN:
        os.close(_OPEN.popitem(last=False)[1])
    _OPEN[path] = os.open(path, os.O_RDONLY)
    return _OPEN[path]


def _os_message(path: Path, e: OSError) -> str:
    """One line for an OSError on a token file; for the open-file limit, what to do."""
    hint = (" (the process's open-file limit: raise `ulimit -n`, or close other files)"
            if e.errno == errno.EMFILE else "")
    return f"{path}: cannot be read: {e.strerror or e}{hint}"


Part = np.ndarray | ShardFile


class Tokens:
    """Token ids in shards. `positions(span)` counts the window starts of `span` tokens that
    lie inside one shard; `windows(u, length, span)` returns, for each start index u in
    [0, positions(span)), the `length` ids from that start as an int64 tensor (len(u), length).
    """

    def __init__(self, parts: Sequence[Part | torch.Tensor], names: Sequence[str] = ()) -> None:
        """`parts` in memory (arrays or tensors of integer ids) or in files (`ShardFile`)."""
        self.parts: list[Part] = [p.numpy() if isinstance(p, torch.Tensor) else p for p in parts]
        for p in self.parts:
            if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer):
                raise ShardError(f"token shard of shape {p.shape} dtype {p.dtype}: expected a "
                                 "1-D array of integer ids")
        self.names = tuple(names) or tuple(f"part {i}" for i in range(len(self.parts)))
        self.lengths = np.array([len(p) for p in self.parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.lengths.sum())

    def positions(self, span: int) -> int:
        """Window starts of `span` tokens that fit inside one shard, over all shards."""
        return int(np.maximum(self.lengths - span + 1, 0).sum())

    def windows(self, starts: torch.Tensor, length: int, span: int) -> torch.Tensor:
        """(len(starts), length) int64 ids; `starts` index the starts of `span`-token windows
        (`positions`), `length` <= `span` ids are taken from each. Raises ShardError for an
        index out of range."""
        counts = np.maximum(self.lengths - span + 1, 0)
        ends = np.cumsum(counts)
        u = starts.numpy().astype(np.int64, copy=False)
        if len(u) and (u.min() < 0 or u.max() >= ends[-1]):
            raise ShardError(f"window start index {int(u.max())} out of range "
                             f"[0, {int(ends[-1])})")
        shard = np.searchsorted(ends, u, side="right")
        offset = u - (ends[shard] - counts[shard])
        out = np.empty((len(u), length), dtype=np.int64)
        for i, (k, o) in enumerate(zip(shard.tolist(), offset.tolist(), strict=True)):
            out[i] = self._read(k, o, length)
        return torch.from_numpy(out)

    def _read(self, k: int, start: int, length: int) -> np.ndarray:
        """Ids start .. start + length - 1 of shard k: a pread from its file (a memory map's
        faults read ahead and stay resident, 16 GB after 32,000 random windows of a 1e10-token
        set; a pread leaves only the kernel's page cache), or a slice of one in memory."""
        part = self.parts[k]
        if isinstance(part, ShardFile):
            return part.read(start, length)
        return part[start : start + length]

    def ids(self) -> torch.Tensor:
        """Every id, shards joined, as one int64 tensor: a copy, for small data and tests."""
        return torch.from_numpy(np.concatenate(
            [np.asarray(p.read(0, len(p)) if isinstance(p, ShardFile) else p, dtype=np.int64)
             for p in self.parts]))

    def id_range(self) -> tuple[int, int]:
        """(smallest, largest) id over every shard, read SCAN_CHUNK tokens at a time."""
        lo, hi = None, None
        for p in self.parts:
            for chunk in _chunks(p):
                a, b = int(chunk.min()), int(chunk.max())
                lo, hi = a if lo is None else min(lo, a), b if hi is None else max(hi, b)
        return (lo or 0, hi or 0)

    @classmethod
    def of_files(cls, files: Sequence[Path]) -> Tokens:
        """Every file a shard (`open_shard`): its place and size, no file kept open."""
        return cls([open_shard(f) for f in files], [f.name for f in files])

    def split_tail(self, divisor: int) -> tuple[Tokens, Tokens]:
        """The last len // divisor ids of the last shard held out (`split.tail_cut`):
        (training, held-out), no copy."""
        last = self.parts[-1]
        cut = tail_cut(len(last), divisor)
        head, tail = ((last.slice(0, cut), last.slice(cut, len(last)))
                      if isinstance(last, ShardFile) else (last[:cut], last[cut:]))
        return (Tokens([*self.parts[:-1], head], self.names),
                Tokens([tail], [f"last 1/{divisor} of {self.names[-1]}"]))


def _chunks(part: Part) -> Iterator[np.ndarray]:
    """The shard's ids SCAN_CHUNK at a time: read from its file, or sliced from memory."""
    for i in range(0, len(part), SCAN_CHUNK):
        n = min(SCAN_CHUNK, len(part) - i)
        yield part.read(i, n) if isinstance(part, ShardFile) else part[i : i + n]


def open_shard(path: Path) -> ShardFile:
    """One token file's place and size: a 1-D integer .npy, or a .bin of a known layout whose
    size matches its header (module docstring). The file is closed again. Raises ShardError
    naming the file for anything else, and for a file that cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if path.suffix == ".npy":
                return _npy(path, f, size)
            if path.suffix == ".bin":
                return _bin(path, f.read(4 * BIN_HEADER_INTS), size)
    except OSError as e:
        raise ShardError(_os_message(path, e)) from e
    raise ShardError(f"{path}: token files are .npy or .bin; got '{path.suffix}'")


def _npy(path: Path, f: BinaryIO, size: int) -> ShardFile:
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                np.lib.format.read_array_header_2_0)  # 3.0 differs only in utf-8 field names
        shape, _, dtype = read(f)
    except (ValueError, OSError) as e:
        raise ShardError(f"{path}: not a readable .npy file ({e})") from e
    if dtype.hasobject:
        raise ShardError(f"{path}: an object array; expected a 1-D array of integer token ids")
    if len(shape) != 1 or not np.issubdtype(dtype, np.integer):
        raise ShardError(f"{path}: expected a 1-D array of integer token ids, got shape "
                         f"{shape} dtype {dtype}")
    if shape[0] == 0:
        raise ShardError(f"{path}: holds no token ids")
    offset = f.tell()
    if size != (want := offset + shape[0] * dtype.itemsize):
        raise ShardError(f"{path}: header says {shape[0]} ids of {dtype} ({want} bytes with "
                         f"the header), the file has {size} bytes")
    return ShardFile(path, offset, dtype, shape[0])


def _bin(path: Path, raw: bytes, size: int) -> ShardFile:
    head = np.frombuffer(raw, dtype="<i4") if len(raw) == 4 * BIN_HEADER_INTS else None
    key = (int(head[0]), int(head[1])) if head is not None else None
    if key in BIN_FORMATS:
        dtype, count = BIN_FORMATS[key], int(head[2])
        if count <= 0:
            raise ShardError(f"{path}: its header says it holds {count} tokens")
        want = 4 * BIN_HEADER_INTS + count * dtype.itemsize
        if size != want:
            raise ShardError(f"{path}: header says {count} tokens of {dtype} ({want} bytes "
                             f"with the header), the file has {size} bytes")
        return ShardFile(path, 4 * BIN_HEADER_INTS, dtype.newbyteorder("<"), count)
    if size == 0:
        raise ShardError(f"{path}: empty file")
    if size % 2:
        raise ShardError(f"{path}: no llm.c header (magic {sorted(m for m, _ in BIN_FORMATS)}) "
                         f"and an odd size ({size} bytes): not nanoGPT's raw uint16 either")
    return ShardFile(path, 0, np.dtype("<u2"), size // 2)


def token_files(source: str, record: dict[str, Any] | None = None) -> list[Path]:
    """The token files a source names: one file, a folder's .npy/.bin files (not its
    dot-files), or a glob; sorted by name. With `record`, what was read and skipped goes into
    it. Raises ShardError when it names none, saying what was looked for."""
    path = Path(source).expanduser()
    passed = 0
    if is_glob(source):
        files = globbed(source)
    elif path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES]
        files = sorted(p for p in found if not hidden(p.name))
        passed = len(found) - len(files)
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise ShardError(f"{source}: no token files ({', '.join(SUFFIXES)}) found")
    if record is not None:
        record.update({"read": len(files), "skipped": {HIDDEN: passed} if passed else {}})
    return files


def split_heldout(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Training and held-out shards: files with 'val' in the name are held out (modded-nanogpt's
    fineweb_val_*.bin); otherwise, with two or more, the last one. With one file, nothing here:
    the caller holds out its tail."""
    val = [f for f in files if "val" in f.name]
    if val and len(val) < len(files):
        return [f for f in files if f not in val], val
    if len(files) >= 2:
        return files[:-1], files[-1:]
    return files, []


def check_ids(tokens: Tokens, where: str, vocab_size: int | None, key: str) -> int:
    """The vocabulary size the ids are checked against, returned: `vocab_size`, or with None,
    the largest id + 1. Raise ShardError naming the shard unless every id is >= 0 (a negative
    id indexes no vocabulary: -1 or -100 are padding and ignore values, not tokens), every id
    lies below `vocab_size` (declared as `key`), and the stored dtype can hold the vocabulary:
    a uint16 file holds no id over 65,535, so a larger vocabulary means ids that wrapped when
    the file was written."""
    for part, name in zip(tokens.parts, tokens.names, strict=True):
        if vocab_size is not None and np.issubdtype(part.dtype, np.unsignedinteger) and \
                vocab_size > np.iinfo(part.dtype).max + 1:
            raise ShardError(f"{where}: {name} stores ids as {part.dtype}, which holds at most "
                             f"{np.iinfo(part.dtype).max + 1} distinct ids, but {key} = "
                             f"{vocab_size}: ids of a larger vocabulary wrapped when it was "
                             "written; write it as uint32")
    ranges = [Tokens([part]).id_range() for part in tokens.parts]
    for (lo, hi), name in zip(ranges, tokens.names, strict=True):
        if lo < 0:
            raise ShardError(f"{where}: {name} holds negative token ids ({lo}..{hi}); token ids "
                             "are integers >= 0, indices into the vocabulary (-1 and -100 are "
                             "padding and ignore values, not tokens: leave them out of the file)")
    top = max(range(len(ranges)), key=lambda k: ranges[k][1])  # the shard of the largest id
    if vocab_size is None:
        return ranges[top][1] + 1
    (lo, hi), name = ranges[top], tokens.names[top]
    if hi >= vocab_size:
        raise ShardError(f"{where}: token ids must lie in [0, {vocab_size}) ({key} = "
                         f"{vocab_size}); {name} holds {lo}..{hi}: ids of another vocabulary, "
                         f"or declare data.vocab_size >= {hi + 1}")
    return vocab_size


def spread(count: int, n: int) -> torch.Tensor:
    """n int64 indices evenly spread over [0, count - 1], ends included: floor(i (count - 1) /
    (n - 1)) in exact integer arithmetic (a float32 linspace loses whole units past 2^24)."""
    if n <= 1 or count <= 1:
        return torch.zeros(max(n, 0), dtype=torch.long)
    return torch.arange(n, dtype=torch.long) * (count - 1) // (n - 1)
