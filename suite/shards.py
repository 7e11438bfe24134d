"""Token ids at any size: shards memory-mapped in their stored dtype, never copied whole.

A `Tokens` is an ordered list of 1-D integer arrays (shards: in memory, or memory-mapped
files) read as windows that never cross a shard boundary. What a batch needs is copied out
window by window, so resident memory stays at the windows drawn, whatever the corpus size.
Every index and count is an int64 (numpy or torch), never a float: a float32 counts exactly to
16.7M only, and a 10B-token corpus needs 34 bits.

Files read (`open_tokens`):
- `.npy`: a 1-D array of any integer dtype (np.load with mmap_mode="r");
- `.bin`: llm.c / modded-nanogpt shards, a header of 256 int32 (magic, version, token count)
  then the tokens: uint16 for magic 20240520 version 1 (GPT-2), uint32 for magic 20240801
  version 7 (Llama 3); a `.bin` without that header is nanoGPT's raw uint16 (prepare.py);
- a folder (its .npy and .bin files, sorted by name) or a glob pattern.
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

BIN_HEADER_INTS = 256
BIN_FORMATS = {(20240520, 1): np.dtype(np.uint16), (20240801, 7): np.dtype(np.uint32)}
SUFFIXES = (".npy", ".bin")
SCAN_CHUNK = 1 << 24  # tokens per read while checking ids: 32-64 MB, whatever the file size
MAX_OPEN = 64  # shard files kept open for reading windows


class ShardError(ValueError):
    """A token file that cannot be used; the message names the file and what is expected."""


class Tokens:
    """Token ids in shards. `positions(span)` counts the window starts of `span` tokens that
    lie inside one shard; `windows(u, length, span)` returns, for each start index u in
    [0, positions(span)), the `length` ids from that start as an int64 tensor (len(u), length).
    """

    def __init__(self, parts: Sequence[np.ndarray | torch.Tensor], names: Sequence[str] = (),
                 files: Sequence[tuple[Path, int] | None] = ()) -> None:
        """`parts` in memory or memory-mapped; `files`, for a memory-mapped part, its file and
        the byte offset of its first id (what `id_range` reads)."""
        self.parts = [p.numpy() if isinstance(p, torch.Tensor) else p for p in parts]
        self.files = list(files) or [None] * len(self.parts)
        for p in self.parts:
            if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer):
                raise ShardError(f"token shard of shape {p.shape} dtype {p.dtype}: expected a "
                                 "1-D array of integer ids")
        self.names = tuple(names) or tuple(f"part {i}" for i in range(len(self.parts)))
        self.lengths = np.array([len(p) for p in self.parts], dtype=np.int64)
        self._fds: dict[int, int] = {}  # shard -> an open file descriptor, for pread

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
        part, file = self.parts[k], self.files[k]
        if file is None:
            return part[start : start + length]
        if k not in self._fds:
            if len(self._fds) >= MAX_OPEN:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[k] = os.open(file[0], os.O_RDONLY)
        size = part.dtype.itemsize
        raw = os.pread(self._fds[k], length * size, file[1] + start * size)
        return np.frombuffer(raw, dtype=part.dtype)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)

    def ids(self) -> torch.Tensor:
        """Every id, shards joined, as one int64 tensor: a copy, for small data and tests."""
        return torch.from_numpy(np.concatenate([np.asarray(p, dtype=np.int64)
                                                for p in self.parts]))

    def id_range(self) -> tuple[int, int]:
        """(smallest, largest) id over every shard, read in chunks of SCAN_CHUNK tokens from
        the file (not the memory map: its pages would stay resident)."""
        lo, hi = None, None
        for p, f in zip(self.parts, self.files, strict=True):
            for chunk in _chunks(p, f):
                a, b = int(chunk.min()), int(chunk.max())
                lo, hi = a if lo is None else min(lo, a), b if hi is None else max(hi, b)
        return (lo or 0, hi or 0)


    @classmethod
    def of_files(cls, files: Sequence[Path]) -> Tokens:
        """Every file a shard (`read_shard`), memory-mapped."""
        maps = [read_shard(f) for f in files]
        return cls([m for m, _ in maps], [f.name for f in files],
                   [(f, off) for f, (_, off) in zip(files, maps, strict=True)])

    def split_tail(self, divisor: int) -> tuple[Tokens, Tokens]:
        """The last len // divisor ids of the last shard held out: (training, held-out), no
        copy."""
        last, file = self.parts[-1], self.files[-1]
        cut = len(last) - len(last) // divisor
        tail_file = None if file is None else (file[0], file[1] + cut * last.dtype.itemsize)
        return (Tokens([*self.parts[:-1], last[:cut]], self.names, self.files),
                Tokens([last[cut:]], [f"last 1/{divisor} of {self.names[-1]}"], [tail_file]))


def _chunks(part: np.ndarray, file: tuple[Path, int] | None):  # noqa: ANN202
    """The shard's ids SCAN_CHUNK at a time: read from its file through one reused buffer
    where it has one (pages of the memory map would stay resident), else sliced."""
    if file is None:
        for i in range(0, len(part), SCAN_CHUNK):
            yield part[i : i + SCAN_CHUNK]
        return
    buf = np.empty(min(SCAN_CHUNK, max(len(part), 1)), dtype=part.dtype)
    with open(file[0], "rb") as f:
        f.seek(file[1])
        left = len(part)
        while left:
            n = min(left, len(buf))
            got = f.readinto(memoryview(buf[:n]).cast("B")) // part.dtype.itemsize
            if got == 0:
                break
            yield buf[:got]
            left -= got


def read_shard(path: Path) -> tuple[np.ndarray, int]:
    """One token file as a read-only 1-D memory map in its stored dtype, and the byte offset of
    its first id in the file. Raises ShardError
    naming the file for anything but a 1-D integer .npy or a .bin of a known layout whose size
    matches its header."""
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise ShardError(f"{path}: not a readable .npy file ({e})") from e
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ShardError(f"{path}: expected a 1-D array of integer token ids, got shape "
                             f"{arr.shape} dtype {arr.dtype}")
        if arr.size == 0:
            raise ShardError(f"{path}: holds no token ids")
        if not isinstance(arr, np.memmap):  # np.load maps only what it can: say so, not copy
            raise ShardError(f"{path}: cannot be memory-mapped (object or compressed array)")
        return arr, int(arr.offset)
    if path.suffix != ".bin":
        raise ShardError(f"{path}: token files are .npy or .bin; got '{path.suffix}'")
    size = path.stat().st_size
    head = np.fromfile(path, dtype="<i4", count=BIN_HEADER_INTS) if size >= 4 * 256 else None
    key = (int(head[0]), int(head[1])) if head is not None else None
    if key in BIN_FORMATS:
        dtype, count = BIN_FORMATS[key], int(head[2])
        if count <= 0:
            raise ShardError(f"{path}: its header says it holds {count} tokens")
        want = 4 * BIN_HEADER_INTS + count * dtype.itemsize
        if size != want:
            raise ShardError(f"{path}: header says {count} tokens of {dtype} ({want} bytes "
                             f"with the header), the file has {size} bytes")
        return (np.memmap(path, dtype=dtype, mode="r", offset=4 * BIN_HEADER_INTS,
                          shape=(count,)), 4 * BIN_HEADER_INTS)
    if size == 0:
        raise ShardError(f"{path}: empty file")
    if size % 2:
        raise ShardError(f"{path}: no llm.c header (magic {sorted(m for m, _ in BIN_FORMATS)}) "
                         f"and an odd size ({size} bytes): not nanoGPT's raw uint16 either")
    return np.memmap(path, dtype=np.uint16, mode="r", shape=(size // 2,)), 0


def token_files(source: str) -> list[Path]:
    """The token files a source names: one file, a folder's .npy/.bin files, or a glob; sorted
    by name. Raises ShardError when it names none, saying what was looked for."""
    path = Path(source).expanduser()
    if any(c in source for c in "*?["):
        files = sorted(Path(p) for p in globlib.glob(str(path), recursive=True)
                       if Path(p).is_file())
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise ShardError(f"{source}: no token files ({', '.join(SUFFIXES)}) found")
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


def check_ids(tokens: Tokens, where: str, vocab_size: int, key: str) -> None:
    """Raise ShardError unless every id lies in [0, vocab_size) and the stored dtype can hold
    the vocabulary: a uint16 file holds no id over 65,535, so a larger vocabulary means ids
    that wrapped when the file was written."""
    for part, name in zip(tokens.parts, tokens.names, strict=True):
        if np.issubdtype(part.dtype, np.unsignedinteger) and \
                vocab_size > np.iinfo(part.dtype).max + 1:
            raise ShardError(f"{where}: {name} stores ids as {part.dtype}, which holds at most "
                             f"{np.iinfo(part.dtype).max + 1} distinct ids, but {key} = "
                             f"{vocab_size}: ids of a larger vocabulary wrapped when it was "
                             "written; write it as uint32")
    lo, hi = tokens.id_range()
    if lo < 0 or hi >= vocab_size:
        raise ShardError(f"{where}: token ids must lie in [0, {key}={vocab_size}); found "
                         f"{lo}..{hi}")


def spread(count: int, n: int) -> torch.Tensor:
    """n int64 indices evenly spread over [0, count - 1], ends included: floor(i (count - 1) /
    (n - 1)) in exact integer arithmetic (a float32 linspace loses whole units past 2^24)."""
    if n <= 1 or count <= 1:
        return torch.zeros(max(n, 0), dtype=torch.long)
    return torch.arange(n, dtype=torch.long) * (count - 1) // (n - 1)
