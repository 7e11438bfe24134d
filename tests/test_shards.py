"""Token shards at any size (issue 13): memory-mapped in their stored dtype, exact int64 counts,
whole held-out shards, ids checked against the definition before training."""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from suite import data as D
from suite.data import shards as S


def write_bin(path, ids, magic=20240520, version=1, dtype=np.uint16, count=None):
    """An llm.c / modded-nanogpt shard: 256 int32 of header, then the ids."""
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(ids) if count is None else count
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(ids, dtype=dtype).tobytes())
    return path


def sparse_bin(path, tokens):
    """A modded-nanogpt shard of `tokens` zero ids that takes no disk: a header, then a hole."""
    write_bin(path, [], count=tokens)
    with open(path, "r+b") as f:
        f.truncate(1024 + 2 * tokens)
    return path


@pytest.mark.parametrize(("magic", "version", "dtype"), [(20240520, 1, np.uint16),
                                                         (20240801, 7, np.uint32)])
def test_llmc_shards_are_read_in_their_dtype(tmp_path, magic, version, dtype):
    ids = np.arange(1000, dtype=np.int64) * 61 % 70000 % (np.iinfo(dtype).max + 1)
    shard = S.open_shard(write_bin(tmp_path / "a.bin", ids, magic, version, dtype))
    assert shard.dtype == dtype and shard.offset == 1024 and len(shard) == 1000
    assert np.array_equal(np.asarray(shard.read(0, 1000), dtype=np.int64), ids)
    assert shard.read(990, 10).tolist() == ids[990:].tolist()


def test_nanogpt_raw_bin_and_npy(tmp_path):
    ids = np.arange(500, dtype=np.uint16)
    ids.tofile(tmp_path / "train.bin")  # nanoGPT's prepare.py: raw uint16, no header
    shard = S.open_shard(tmp_path / "train.bin")
    assert shard.dtype == np.uint16 and shard.offset == 0 and np.array_equal(shard.read(0, 500),
                                                                            ids)
    np.save(tmp_path / "t.npy", ids.astype(np.uint32))
    shard = S.open_shard(tmp_path / "t.npy")
    assert shard.dtype == np.uint32 and shard.offset == 128 and len(shard) == 500
    assert np.array_equal(shard.read(0, 500), ids)
    np.save(tmp_path / "big.npy", ids.astype(">u2"))  # big-endian: read as stored
    assert S.Tokens.of_files([tmp_path / "big.npy"]).ids().tolist() == ids.tolist()


def test_bad_token_files_name_the_file(tmp_path):
    bad = write_bin(tmp_path / "short.bin", np.arange(10), count=20)
    with pytest.raises(S.ShardError, match=re.escape(f"{bad}: header says 20 tokens of uint16 "
                                                     "(1064 bytes with the header), the file "
                                                     "has 1044 bytes")):
        S.open_shard(bad)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"abc")
    with pytest.raises(S.ShardError, match=re.escape(f"{odd}: no llm.c header")):
        S.open_shard(odd)
    pattern = str(tmp_path / "x*.npy")
    with pytest.raises(S.ShardError, match=re.escape(f"{pattern}: no token files (.npy, .bin) "
                                                     "found")):
        S.token_files(pattern)


def test_windows_never_cross_a_shard_and_counts_are_exact():
    tokens = S.Tokens([np.arange(0, 10), np.arange(100, 103), np.arange(200, 208)])
    assert len(tokens) == 21
    assert tokens.positions(4) == 7 + 0 + 5  # the 3-token shard holds no 4-token window
    starts = torch.arange(tokens.positions(4))
    w = tokens.windows(starts, 4, 4)
    assert w.dtype == torch.int64 and w.shape == (12, 4)
    assert w[6].tolist() == [6, 7, 8, 9] and w[7].tolist() == [200, 201, 202, 203]
    assert all(int(r[-1] - r[0]) == 3 for r in w)  # contiguous: inside one shard
    with pytest.raises(S.ShardError, match=r"window start index 12 out of range \[0, 12\)"):
        tokens.windows(torch.tensor([12]), 4, 4)


def test_spread_is_exact_integer_arithmetic_past_float32():
    count, n = 10**10 + 7, 33
    got = S.spread(count, n).tolist()
    assert got == [i * (count - 1) // (n - 1) for i in range(n)]
    assert got[-1] == count - 1 and got[0] == 0
    assert len(set(got)) == n
    assert S.spread(5, 1).tolist() == [0] and S.spread(1, 3).tolist() == [0, 0, 0]


def test_heldout_windows_of_a_large_corpus_are_whole(tmp_path):
    """Found as a new user (200M-token .npy): a float32 linspace of window starts could not count
    past 16.7M, and `heldout_batches` stacked windows of 17 and 16 tokens."""
    folder = tmp_path / "shards"
    folder.mkdir()
    sparse_bin(folder / "fineweb_train_000001.bin", 1000)
    sparse_bin(folder / "fineweb_val_000000.bin", 40_000_000)
    data = D.load_text(str(folder), vocab_size=50257)
    assert data.heldout_names == ("fineweb_val_000000.bin",)
    assert len(data.heldout) == 40_000_000 and len(data.train) == 1000
    batches = D.heldout_batches(data, "causal-lm", 4, 16, 8)
    assert len(batches) == 8 and all(x.shape == (4, 16) == y.shape for x, y in batches)


def test_heldout_by_whole_shards_or_the_tail(tmp_path):
    for i in range(3):
        write_bin(tmp_path / f"part{i}.bin", np.full(300, i))
    data = D.load_text(str(tmp_path), vocab_size=10)
    assert data.heldout_names == ("part2.bin",)
    assert set(data.heldout.ids().tolist()) == {2} and set(data.train.ids().tolist()) == {0, 1}
    assert data.source == f"{tmp_path} (3 shard(s), 900 tokens)"
    one = D.load_text(str(tmp_path / "part1.bin"), vocab_size=10)
    assert (len(one.train), len(one.heldout)) == (270, 30)
    assert one.heldout_names == ("last 1/10 of part1.bin",)
    glob = D.load_text(str(tmp_path / "part[01].bin"), vocab_size=10)
    assert glob.heldout_names == ("part1.bin",) and len(glob.train) == 300


def test_ids_are_checked_against_the_declared_vocabulary(tmp_path):
    """Found replaying a bug report: ids of a 128,256-word vocabulary wrapped to uint16 trained
    without a word."""
    path = tmp_path / "llama.npy"
    np.save(path, (np.arange(5000) * 7).astype(np.uint16))
    with pytest.raises(D.DataError) as e:
        D.load_text(str(path), vocab_size=128256)
    assert str(e.value) == (f"{path}: llama.npy stores ids as uint16, which holds at most 65536 "
                            "distinct ids, but data.vocab_size = 128256: ids of a larger "
                            "vocabulary wrapped when it was written; write it as uint32")
    with pytest.raises(D.DataError) as e:
        D.load_text(str(path), vocab_size=100)
    assert str(e.value) == (f"{path}: token ids must lie in [0, 100) (data.vocab_size = 100); "
                            "last 1/10 of llama.npy holds 31500..34993: ids of another "
                            "vocabulary, or declare data.vocab_size >= 34994")
    assert D.load_text(str(path)).vocab_size == 34994  # undeclared: the largest id + 1


@pytest.mark.parametrize("vocab", [None, 0, 50257])
def test_negative_ids_are_named_as_negative(tmp_path, vocab):
    """`--data neg.npy` (all -1) said 'token ids must lie in [0, data.vocab_size=0)': with no
    vocabulary declared it is the largest id + 1, an empty range. Negative ids are refused as
    negative, naming the shard, whatever the vocabulary."""
    np.save(tmp_path / "neg.npy", np.full(1000, -1, dtype=np.int64))
    with pytest.raises(D.DataError) as e:
        D.load_text(str(tmp_path / "neg.npy"), vocab_size=vocab)
    assert str(e.value) == (f"{tmp_path / 'neg.npy'}: neg.npy holds negative token ids (-1..-1); "
                            "token ids are integers >= 0, indices into the vocabulary (-1 and "
                            "-100 are padding and ignore values, not tokens: leave them out of "
                            "the file)")
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "a.npy", np.arange(100, dtype=np.int32))
    ids = np.arange(100, dtype=np.int32)
    ids[50] = -100
    np.save(folder / "b.npy", ids)
    with pytest.raises(D.DataError, match=re.escape(f"{folder}: b.npy holds negative token ids "
                                                    "(-100..99)")):
        D.load_text(str(folder), vocab_size=vocab)


def test_a_vocabulary_from_tokens_json_is_named_as_such(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    write_bin(folder / "t_val_000000.bin", np.arange(50))
    write_bin(folder / "t_train_000001.bin", np.arange(90))
    record = {"tokenizer": {"vocab_size": 64}, "heldout": {"tokens": 50, "bytes": 100}}
    (folder / "tokens.json").write_text(json.dumps(record))
    with pytest.raises(D.DataError) as e:
        D.load_text(str(folder))
    assert str(e.value) == (f"{folder}: token ids must lie in [0, 64) (the vocab_size in "
                            f"{folder / 'tokens.json'} = 64); t_train_000001.bin holds 0..89: "
                            "ids of another vocabulary, or declare data.vocab_size >= 90")
    assert D.load_text(str(folder), vocab_size=90).vocab_size == 90
    with pytest.raises(D.DataError, match=re.escape("data.vocab_size = -1; allowed: 0")):
        D.load_tokens(str(folder), vocab_size=-1)


def test_id_range_reads_a_memory_map_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "SCAN_CHUNK", 64)
    ids = (np.arange(1000) * 13 % 997).astype(np.uint16)
    ids[777] = 5000
    tokens = S.Tokens.of_files([write_bin(tmp_path / "a.bin", ids)])
    assert tokens.id_range() == (0, 5000)
    train, held = tokens.split_tail(10)
    assert held.id_range() == (int(ids[900:].min()), int(ids[900:].max()))
    assert train.id_range() == (0, 5000)


def many_shards(folder, n, tokens=80, vocab=50):
    """n tiny llm.c shards named as modded-nanogpt names them, and one held-out shard."""
    folder.mkdir()
    for i in range(n):
        write_bin(folder / f"fineweb_train_{i + 1:06d}.bin", (np.arange(tokens) + i) % vocab)
    write_bin(folder / "fineweb_val_000000.bin", np.arange(tokens) % vocab)
    return folder


LOW_LIMIT = textwrap.dedent("""
    import resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # `ulimit -n 1024`, before imports
    import torch
    from suite import data as D
    from suite.data import shards as S
    data = D.load_text(sys.argv[1], vocab_size=50)
    batches = D.TrainBatches(data, "causal-lm", 64, 32, seed=0)
    for _ in range(60):  # 3,840 windows over 3,000 shards: nearly every shard is read
        x, y = next(batches)
        assert torch.equal(x[:, 1:], y[:, :-1])
    D.heldout_batches(data, "causal-lm", 8, 32, 4, split="train")
    import os
    print(len(data.train.parts), len(os.listdir("/proc/self/fd")), len(S._OPEN))
""")


def test_three_thousand_shards_train_under_the_common_open_file_limit(tmp_path):
    """litData#366: a memory map per shard kept a file descriptor each, so 1,017 shards hit
    `ulimit -n 1024` ('Too many open files'). Shards are places and sizes now; reads go
    through at most MAX_OPEN descriptors, whatever the count."""
    folder = many_shards(tmp_path / "many", 3000)
    out = subprocess.run([sys.executable, "-c", LOW_LIMIT, str(folder)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    parts, fds, cached = map(int, out.stdout.split())
    assert parts == 3000
    assert cached == S.MAX_OPEN and fds < S.MAX_OPEN + 64  # the cache, stdio, torch's own


def test_no_token_file_is_held_open(tmp_path):
    """A shard holds no descriptor (a memory map holds one); reading (the id check at load,
    batches) keeps at most MAX_OPEN, the least recently used closed first, over every Tokens
    of the process."""
    folder = many_shards(tmp_path / "some", 3 * S.MAX_OPEN)
    shard = S.open_shard(folder / "fineweb_val_000000.bin")
    assert not hasattr(shard, "fileno") and not hasattr(shard, "_mmap")
    data = D.load_text(str(folder), vocab_size=50)  # reads every id, checking the vocabulary
    assert all(isinstance(p, S.ShardFile) for p in data.train.parts + data.heldout.parts)
    assert len(S._OPEN) == S.MAX_OPEN
    ids = data.train.ids()  # every shard read
    assert len(ids) == 80 * 3 * S.MAX_OPEN and len(S._OPEN) == S.MAX_OPEN
    again = D.load_text(str(folder), vocab_size=50)
    next(D.TrainBatches(again, "causal-lm", 256, 16, seed=1))
    assert len(S._OPEN) == S.MAX_OPEN


def test_an_unreadable_token_file_is_one_line(tmp_path):
    """An OSError reading a shard (here: the file vanished after loading) names the file."""
    folder = many_shards(tmp_path / "two", 2)
    data = D.load_text(str(folder), vocab_size=50)
    gone = folder / "fineweb_train_000002.bin"
    gone.unlink()
    S._OPEN.pop(gone, None)
    with pytest.raises(S.ShardError, match=re.escape(f"{gone}: cannot be read: No such file")):
        data.train.ids()
    truncated = write_bin(tmp_path / "t.npy", [])
    np.save(truncated, np.arange(100, dtype=np.int32))
    with open(truncated, "r+b") as f:
        f.truncate(200)
    with pytest.raises(S.ShardError, match=re.escape(f"{truncated}: header says 100 ids of int32 "
                                                     "(528 bytes with the header), the file "
                                                     "has 200 bytes")):
        S.open_shard(truncated)


def test_dot_files_are_no_shards(tmp_path):
    """macOS's AppleDouble `._x.bin` beside each shard was read as nanoGPT's raw uint16."""
    folder = many_shards(tmp_path / "mac", 3)
    (folder / "._fineweb_train_000001.bin").write_bytes(b"\0\5" * 2048)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" * 100)
    data = D.load_text(str(folder), vocab_size=50)
    assert data.train.names == tuple(f"fineweb_train_{i:06d}.bin" for i in (1, 2, 3))
    assert data.files == {"read": 4, "skipped": {"(hidden)": 1}}
    glob = D.load_text(str(folder / "*.bin"), vocab_size=50)
    assert len(glob.train.parts) == 3
