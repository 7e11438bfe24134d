"""`python -m suite tokenize` (issue 13): text, .jsonl and .parquet into llm.c shards with HF
tokenizers, whole documents held out, a record that bits per byte and training read back."""

import json
import re

import numpy as np
import pytest

from suite import data as D
from suite.cli import main
from suite.data import shards as S
from suite.data.tokenize import RECORD, tokenize
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run.executor import RunOptions, run_one
from suite.spec import with_data_source

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega").split()


def document(i: int) -> str:
    rng = np.random.default_rng(i)
    return " ".join(rng.choice(WORDS, 200)) + f"\nend of document {i} ü\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    for i in range(30):
        (root / f"doc{i:02d}.txt").write_text(document(i), encoding="utf-8")
    (root / "logo.png").write_bytes(b"\x89PNG")
    return root


@pytest.fixture(scope="module")
def bpe(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    return out, tokenize(str(folder), out, bpe_vocab=400, shard_tokens=3000)


def ids_of(paths):
    return np.concatenate([np.asarray(S.open_shard(p).read(0, len(S.open_shard(p))),
                                      dtype=np.int64) for p in paths])


def test_shards_hold_every_document_and_the_record_says_what(folder, bpe):
    out, rec = bpe
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    assert rec["tokenizer"]["vocab_size"] == tok.get_vocab_size() <= 400
    assert rec["tokenizer"]["trained_here"] and rec["tokenizer"]["end_of_text"] == "<|endoftext|>"
    assert rec["dtype"] == "uint16"
    assert rec["files"] == {"suffixes": [".txt", ".md", ".rst", ".text", "", ".jsonl",
                                         ".parquet"], "read": 30, "skipped": {".png": 1}}
    assert rec["heldout"]["documents"] == 3 and rec["train"]["documents"] == 27
    assert [n.rsplit("/", 1)[-1] for n in rec["heldout"]["document_names"]] == \
        ["doc09.txt", "doc19.txt", "doc29.txt"]
    assert rec["heldout"]["bytes"] == sum(len(document(i).encode()) for i in (9, 19, 29))
    held = ids_of([out / f for f in rec["heldout"]["shards"]])
    train = ids_of([out / f for f in rec["train"]["shards"]])
    assert len(held) == rec["heldout"]["tokens"] and len(train) == rec["train"]["tokens"]
    assert len(rec["train"]["shards"]) == -(-len(train) // 3000)  # 3000 ids a shard
    docs = [tok.decode(part.tolist()) for part in np.split(held, np.flatnonzero(held == eot))[1:]]
    assert docs == [document(i) for i in (9, 19, 29)]  # whole documents, in order
    assert train[0] == eot and (train == eot).sum() == 27


def test_a_tokenizer_file_gives_the_same_shards(folder, bpe, tmp_path):
    out, rec = bpe
    again = tokenize(str(folder), tmp_path, tokenizer=out / "tokenizer.json", shard_tokens=3000)
    assert again["tokenizer"]["sha256"] == rec["tokenizer"]["sha256"]
    assert not again["tokenizer"]["trained_here"]
    for split in ("train", "heldout"):
        assert ids_of([tmp_path / f for f in again[split]["shards"]]).tolist() == \
            ids_of([out / f for f in rec[split]["shards"]]).tolist()


def test_training_reads_the_shards_with_bits_per_byte(bpe, tmp_path):
    out, rec = bpe
    data = D.load_text(str(out))
    assert data.vocab_size == rec["tokenizer"]["vocab_size"]
    assert data.bytes_per_token == rec["heldout"]["bytes"] / rec["heldout"]["tokens"]
    assert data.heldout_names == tuple(rec["heldout"]["shards"])
    bench = with_data_source(load_benchmarks()["gpt"], "smoke", str(out))
    run = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                           RunOptions(threads=1, progress=False)))
    assert run.complete
    row = run.curve[-1]
    assert row["heldout_bpb"] == pytest.approx(
        row["heldout_loss"] / np.log(2) / data.bytes_per_token, rel=1e-12)
    assert run.manifest["data"]["inputs"]["vocab_size"] == rec["tokenizer"]["vocab_size"]


def test_jsonl_and_parquet_documents(tmp_path, bpe):
    out, _ = bpe
    lines = [json.dumps({"text": document(i), "id": i}) for i in range(12)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    rec = tokenize(str(tmp_path / "a.jsonl"), tmp_path / "j", tokenizer=out / "tokenizer.json")
    assert rec["train"]["documents"] == 11 and rec["heldout"]["document_names"] == \
        [f"{tmp_path / 'a.jsonl'}:10"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path / 'b.jsonl'}:1: no string under "
                                                    "key 'text'")):
        tokenize(str(tmp_path / "b.jsonl"), tmp_path / "k", tokenizer=out / "tokenizer.json")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": [document(i) for i in range(20)]}),
                   tmp_path / "c.parquet", row_group_size=7)
    rec = tokenize(str(tmp_path / "c.parquet"), tmp_path / "p", tokenizer=out /
                   "tokenizer.json", key="content")
    assert rec["heldout"]["documents"] == 2 and rec["train"]["documents"] == 18
    with pytest.raises(D.DataError, match=r"c\.parquet: no column 'text'; it has content"):
        tokenize(str(tmp_path / "c.parquet"), tmp_path / "q", tokenizer=out / "tokenizer.json")


def test_too_few_documents_leave_nothing_behind(tmp_path, bpe):
    out, _ = bpe
    (tmp_path / "src").mkdir()
    for i in range(4):
        (tmp_path / "src" / f"m{i}.py").write_text(document(i))
    with pytest.raises(D.DataError) as e:
        tokenize(str(tmp_path / "src" / "*.py"), tmp_path / "o", tokenizer=out /
                 "tokenizer.json")
    assert "4 document(s) read (4 file(s) read); document i is held out when i % 10 == 9, so " \
        "at least 10 are needed (--heldout-every sets it)" in str(e.value)
    assert not list((tmp_path / "o").glob("*.bin"))
    rec = tokenize(str(tmp_path / "src" / "*.py"), tmp_path / "o", tokenizer=out /
                   "tokenizer.json", heldout_every=2)
    assert rec["heldout"]["documents"] == 2
    with pytest.raises(D.DataError, match="already holds shards"):
        tokenize(str(tmp_path / "src" / "*.py"), tmp_path / "o", tokenizer=out /
                 "tokenizer.json", heldout_every=2)


def test_the_command_line(folder, tmp_path, capsys):
    assert main(["tokenize", str(folder), "--out", str(tmp_path / "t"), "--train-bpe", "300",
                 "--shard-tokens", "100000"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| heldout +\| +3 \|", out) and "skipped 1 .png" in out
    assert f"train with --data {tmp_path / 't'}" in out
    assert (tmp_path / "t" / RECORD).is_file()
    assert main(["tokenize", str(folder), "--out", str(tmp_path / "u"), "--tokenizer",
                 str(folder / "doc00.txt")]) == 2
    assert "not a tokenizers JSON file" in capsys.readouterr().err
