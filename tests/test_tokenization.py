"""`python -m suite tokenize` (issue 13): text, .jsonl and .parquet into llm.c shards with HF
tokenizers, whole documents held out, a record that bits per byte and training read back."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suite import data as D
from suite.cli import main
from suite.data import documents as docs
from suite.data import shards as S
from suite.data import tokenize as T
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
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path / 'b.jsonl'}:1: no key 'text'; "
                                                    "the line has keys 'body' (--field")):
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
    assert str(e.value) == (f"{tmp_path / 'src' / '*.py'}: 4 document(s) in 4 file(s) (files "
                            f"matching '{tmp_path / 'src' / '*.py'}'); document i is held out "
                            "when i % 10 == 9, so at least 10 are needed (--heldout-every sets "
                            "it)")
    assert not (tmp_path / "o").exists()  # refused before anything was read or written
    lines = [json.dumps({"text": document(i)}) for i in range(4)]
    (tmp_path / "four.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(D.DataError) as e:  # documents counted only as they are read
        tokenize(str(tmp_path / "four.jsonl"), tmp_path / "j", tokenizer=out / "tokenizer.json")
    assert str(e.value) == (f"{tmp_path / 'four.jsonl'}: 4 document(s) in 1 file(s); document i "
                            "is held out when i % 10 == 9, so at least 10 are needed "
                            "(--heldout-every sets it)")
    assert not list((tmp_path / "j").glob("*.bin"))
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


# ---------------------------------------------------------------- faults from field reports


def no_eot_tokenizer(path, texts):
    """A byte-level BPE without any end-of-text token (a user's own tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.save(str(path))
    return path


def test_documents_are_never_joined_silently(folder, tmp_path, capsys):
    """A tokenizer without a recognised end-of-text token joined documents with nothing
    between them and said nothing. It is said now, and recorded; --separator names one."""
    tok = no_eot_tokenizer(tmp_path / "plain.json", [document(i) for i in range(5)])
    rec = tokenize(str(folder), tmp_path / "a", tokenizer=tok)
    err = capsys.readouterr().err
    assert f"{tok} has none of the end-of-text tokens <|endoftext|>" in err
    assert "--separator TEXT" in err
    assert rec["separator"]["ids"] == [] and rec["tokenizer"]["end_of_text"] is None
    rec = tokenize(str(folder), tmp_path / "b", tokenizer=tok, separator="\n\n")
    assert capsys.readouterr().err == ""
    from tokenizers import Tokenizer

    t = Tokenizer.from_file(str(tok))
    sep = t.encode("\n\n", add_special_tokens=False).ids
    assert rec["separator"] == {"text": "\n\n", "ids": sep, "how": "text, encoded"}
    train = ids_of([tmp_path / "b" / f for f in rec["train"]["shards"]]).tolist()
    assert train[: len(sep)] == sep
    assert t.decode(train) == "".join("\n\n" + document(i) for i in range(30) if i % 10 != 9)
    rec = tokenize(str(folder), tmp_path / "c", tokenizer=tok, separator="")
    assert rec["separator"]["how"] == "none, as given" and capsys.readouterr().err == ""


def test_the_command_line_names_the_separator(folder, tmp_path, capsys):
    """`python -m suite tokenize --separator TEXT` reaches tokenize and its record."""
    tok = no_eot_tokenizer(tmp_path / "plain.json", [document(i) for i in range(5)])
    assert main(["tokenize", str(folder), "--out", str(tmp_path / "cli"), "--tokenizer",
                 str(tok), "--separator", "\n\n"]) == 0
    assert "end-of-text" not in capsys.readouterr().err
    rec = json.loads((tmp_path / "cli" / RECORD).read_text())
    assert rec["separator"]["text"] == "\n\n" and rec["separator"]["how"] == "text, encoded"


def test_a_separator_that_is_a_token(bpe, folder, tmp_path):
    out, _ = bpe
    rec = tokenize(str(folder), tmp_path / "s", tokenizer=out / "tokenizer.json",
                   separator="<|endoftext|>")
    assert rec["separator"]["how"] == "a token of the vocabulary"
    assert len(rec["separator"]["ids"]) == 1


def test_jsonl_and_parquet_follow_one_rule_for_values(tmp_path, bpe, capsys):
    """A .parquet column of ints, lists or bytes became "0" and reprs while .jsonl refused a
    number; nulls were dropped without a count. Both now: a string is a document, a null is
    skipped and counted, anything else is refused naming the file, row and key."""
    out, _ = bpe
    tok = out / "tokenizer.json"
    docs = [document(i) for i in range(12)]
    rows = [json.dumps({"text": d}) for d in docs[:6]] + ['{"text": null}'] + \
        [json.dumps({"text": d}) for d in docs[6:]]
    (tmp_path / "n.jsonl").write_text("\n".join(rows) + "\n")
    rec = tokenize(str(tmp_path / "n.jsonl"), tmp_path / "jn", tokenizer=tok)
    assert rec["nulls"] == {"count": 1, "first": [f"{tmp_path / 'n.jsonl'}:7"]}
    assert rec["train"]["documents"] + rec["heldout"]["documents"] == 12
    assert "1 null value(s) of 'text' skipped" in capsys.readouterr().err
    (tmp_path / "i.jsonl").write_text(json.dumps({"text": 0}) + "\n")
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path / 'i.jsonl'}:1: key 'text' holds "
                                                    "int (0), not text; allowed: a string")):
        tokenize(str(tmp_path / "i.jsonl"), tmp_path / "ji", tokenizer=tok)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for name, column, want in [("ints", pa.array(range(20)), "int (0)"),
                               ("lists", pa.array([["a", "b"]] * 20), "list (['a', 'b'])"),
                               ("bytes", pa.array([b"\x00\x01"] * 20), "bytes (b'\\x00\\x01')")]:
        pq.write_table(pa.table({"text": column}), tmp_path / f"{name}.parquet")
        with pytest.raises(D.DataError) as e:
            tokenize(str(tmp_path / f"{name}.parquet"), tmp_path / f"p{name}", tokenizer=tok)
        assert str(e.value) == (f"{tmp_path / f'{name}.parquet'}:1: column 'text' holds {want}, "
                                "not text; allowed: a string (a null is skipped and counted)")
    pq.write_table(pa.table({"text": [None, *docs, None]}), tmp_path / "nulls.parquet")
    rec = tokenize(str(tmp_path / "nulls.parquet"), tmp_path / "pn", tokenizer=tok)
    assert rec["nulls"]["count"] == 2 and rec["nulls"]["first"][1].endswith("nulls.parquet:14")
    assert rec["train"]["documents"] + rec["heldout"]["documents"] == 12


def test_unreadable_jsonl_and_parquet_are_one_line(tmp_path, bpe):
    out, _ = bpe
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')  # Latin-1, not UTF-8
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path / 'bad.jsonl'}:1: not UTF-8 at "
                                                    "byte 13 of the line")):
        tokenize(str(tmp_path / "bad.jsonl"), tmp_path / "b", tokenizer=out / "tokenizer.json")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path / 'bad.parquet'}: not a "
                                                    "readable Parquet file")):
        tokenize(str(tmp_path / "bad.parquet"), tmp_path / "p", tokenizer=out / "tokenizer.json")


def test_hidden_and_binary_files_are_not_tokenized(folder, bpe, tmp_path, capsys):
    """A folder with .DS_Store, a .git/ folder and a suffix-less binary tokenised them as text
    (2,906 replacement characters in one test folder's shards), and the hidden files shifted
    which documents were held out. Now they are skipped, counted and named."""
    out, rec = bpe
    messy = tmp_path / "messy"
    messy.mkdir()
    for p in folder.iterdir():
        (messy / p.name).write_bytes(p.read_bytes())
    (messy / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(range(256)) * 8)
    (messy / ".git" / "objects").mkdir(parents=True)
    (messy / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (messy / ".git" / "objects" / "ab").write_bytes(bytes(range(256)) * 4)
    (messy / "a.out").write_bytes(b"\x7fELF\x02\x01\x01\0" + bytes(range(256)) * 16)
    (messy / "prog").write_bytes(b"\x7fELF\x02\x01\x01\0" + bytes(range(256)) * 16)
    (messy / "core").write_bytes(bytes(range(128, 256)) * 16)  # no NUL, not UTF-8
    again = tokenize(str(messy), tmp_path / "t", tokenizer=out / "tokenizer.json",
                     shard_tokens=3000)
    assert again["files"]["read"] == 30
    assert again["files"]["skipped"] == {".png": 1, ".out": 1, "(hidden)": 2, "(not text)": 2}
    assert again["files"]["not_text"] == [f"{messy / 'core'} (not UTF-8 at byte 0)",
                                          f"{messy / 'prog'} (a NUL byte at byte 7)"]
    assert again["heldout"]["document_names"] == [str(messy / f"doc{i:02d}.txt")
                                                  for i in (9, 19, 29)]
    for split in ("train", "heldout"):
        assert ids_of([tmp_path / "t" / f for f in again[split]["shards"]]).tolist() == \
            ids_of([out / f for f in rec[split]["shards"]]).tolist()
    (messy / "only.bin").write_bytes(b"\0" * 100)
    with pytest.raises(D.DataError, match=re.escape(f"{messy / 'only.bin'}: not text (a NUL "
                                                    "byte at byte 0 of the first 8192)")):
        tokenize(str(messy / "only.bin"), tmp_path / "u", tokenizer=out / "tokenizer.json")


TRICKY = ["word", "  ", " ", "\n", "\n\n", "\t", "ü", "日本語", "🙂", "\u00a0", "\u3000", "'s",
          "123456", "!?", "x" * 70]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TRICKY), max_size=80), st.integers(8, 64))
def test_pieces_are_cut_before_a_word_and_within_the_limit(parts, limit):
    """Each piece has at most `limit` UTF-8 bytes, the pieces joined are the text, and every cut
    lies just before a space with a non-space character on both sides, unless the text within
    the limit has no such space (then at a character boundary)."""
    text = "".join(parts)
    got = list(docs.pieces(text, limit))
    assert "".join(got) == text and all(len(p.encode()) <= limit for p in got)
    start = 0
    for p in got[:-1]:
        at = start + len(p)
        spaces = [i for i in range(start + 1, len(text)) if cuttable(text, i)
                  and len(text[start:i].encode()) <= limit]
        assert at == max(spaces, default=at)  # the last space within the limit, if any
        start = at


def cuttable(text, i):
    """A space with a non-space character on either side."""
    return 0 < i < len(text) - 1 and text[i] == " " and not text[i - 1].isspace() \
        and not text[i + 1].isspace()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(TRICKY[:-1] + ["alpha", "beta", " gamma", ". "]), max_size=120),
       st.integers(8, 48))
def test_a_byte_level_tokenizer_gives_a_document_the_ids_of_its_pieces(bpe_tokenizer, parts,
                                                                       limit):
    """GPT-2's pre-tokenizer never joins a space that has a word on either side to what
    precedes it, so the pieces' ids joined are the whole document's ids."""
    text = "".join(parts)
    whole = bpe_tokenizer.encode(text, add_special_tokens=False).ids
    cut = [i for p in docs.pieces(text, limit) for i in bpe_tokenizer.encode(
        p, add_special_tokens=False).ids]
    runs = [0, *[i for i in range(len(text)) if cuttable(text, i)], len(text)]
    if all(len(text[a:b].encode()) <= limit for a, b in zip(runs, runs[1:], strict=False)):
        assert cut == whole  # no stretch between spaces is over the limit: no other cut


@pytest.fixture(scope="module")
def bpe_tokenizer(bpe):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(bpe[0] / "tokenizer.json"))


def test_long_documents_are_encoded_in_bounded_pieces(folder, bpe, tmp_path, monkeypatch):
    """levanter#568: 256 whole documents were encoded at once, and one 40 MB line took 5.9 GB.
    The tokenizer now never sees more than BATCH_BYTES + PIECE_BYTES bytes in one call, and
    the shards are the very ones a whole-document encoding gives."""
    out, rec = bpe
    from tokenizers import Tokenizer

    long_doc = tmp_path / "long"
    long_doc.mkdir()
    for i in range(10):  # documents of 40 to 400 times the piece size
        (long_doc / f"d{i}.txt").write_text(" ".join(document(j) for j in range(4 * i + 4)))
    whole = tokenize(str(long_doc), tmp_path / "whole", tokenizer=out / "tokenizer.json")
    seen = []
    real = Tokenizer.encode_batch_fast

    def spy(self, texts, **kw):
        seen.append(sum(len(t.encode()) for t in texts))
        assert all(len(t.encode()) <= docs.PIECE_BYTES for t in texts)
        return real(self, texts, **kw)

    monkeypatch.setattr(docs, "PIECE_BYTES", 128)
    monkeypatch.setattr(T, "BATCH_BYTES", 1024)
    monkeypatch.setattr(Tokenizer, "encode_batch_fast", spy)
    cut = tokenize(str(long_doc), tmp_path / "cut", tokenizer=out / "tokenizer.json")
    assert max(seen) <= 1024 + 128 and len(seen) > 100
    for split in ("train", "heldout"):
        assert ids_of([tmp_path / "cut" / f for f in cut[split]["shards"]]).tolist() == \
            ids_of([tmp_path / "whole" / f for f in whole[split]["shards"]]).tolist()
    assert cut["train"]["bytes"] == whole["train"]["bytes"]


def test_parquet_rows_are_read_in_batches_bounded_by_bytes(tmp_path):
    """1,024 rows at a time held 1,024 documents whatever their size."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["x" * 10] * 3000}), tmp_path / "small.parquet")
    rng = np.random.default_rng(0)
    big = ["".join(rng.choice(list("abcdefgh "), 200_000)) for _ in range(40)]  # distinct
    pq.write_table(pa.table({"text": big}), tmp_path / "big.parquet")
    assert docs.rows_per_batch(pq.ParquetFile(tmp_path / "small.parquet")) == 1024
    rows = docs.rows_per_batch(pq.ParquetFile(tmp_path / "big.parquet"))
    assert rows * 200_000 <= docs.PARQUET_BATCH_BYTES and rows >= 1


def test_a_tokenize_cut_off_while_writing_leaves_no_half_record(bpe, folder, tmp_path,
                                                               monkeypatch):
    """tokens.json is written last and atomically: a kill while writing it leaves none (the
    shard set is visibly unfinished), never a truncated record."""
    from suite import results

    out, _ = bpe

    def killed(_fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        tokenize(str(folder), tmp_path / "cut", tokenizer=out / "tokenizer.json")
    assert not (tmp_path / "cut" / RECORD).exists()
    assert not [p.name for p in (tmp_path / "cut").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- messages from a new-user trial


def test_a_folder_with_no_document_says_it_is_a_folder_and_what_it_skipped(tmp_path, bpe):
    """A folder holding only .DS_Store and .git/ said 'no such file or folder, and no file
    matches it as a glob'. Each way of giving no document now says which it is."""
    tok = bpe[0] / "tokenizer.json"
    hid = tmp_path / "hid"
    (hid / ".git").mkdir(parents=True)
    (hid / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (hid / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with pytest.raises(D.DataError) as e:
        tokenize(str(hid), tmp_path / "o", tokenizer=tok)
    assert str(e.value) == (f"{hid}: a folder, but it holds no document (files with suffix "
                            ".txt, .md, .rst, .text, (none), .jsonl, .parquet; skipped 2 "
                            "(hidden): dot-files and dot-folders are never data); allowed: "
                            f"{docs.ALLOWED}")
    assert "no such file" not in str(e.value) and "pass a glob" not in str(e.value)
    (tmp_path / "py").mkdir()
    for i in range(3):
        (tmp_path / "py" / f"m{i}.py").write_text(f"x = {i}\n")
    with pytest.raises(D.DataError, match=re.escape(
            "skipped 3 .py: to read the .py files, pass a glob such as "
            f"'{tmp_path / 'py' / '**' / '*.py'}'); allowed: ")):
        tokenize(str(tmp_path / "py"), tmp_path / "o", tokenizer=tok)
    with pytest.raises(D.DataError) as e:
        tokenize(str(tmp_path / "missing"), tmp_path / "o", tokenizer=tok)
    assert str(e.value) == f"{tmp_path / 'missing'}: no such file or folder; allowed: " \
        f"{docs.ALLOWED}"
    with pytest.raises(D.DataError) as e:
        tokenize(str(tmp_path / "*.xyz"), tmp_path / "o", tokenizer=tok)
    assert str(e.value) == f"{tmp_path / '*.xyz'}: no file matches this glob; allowed: " \
        f"{docs.ALLOWED}"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "prog").write_bytes(b"\x7fELF\0\0")
    with pytest.raises(D.DataError, match=re.escape(
            f"{tmp_path / 'bin' / '*'}: the files this glob matches hold no document (files "
            f"matching '{tmp_path / 'bin' / '*'}'; skipped 1 (not text): not text: "
            f"{tmp_path / 'bin' / 'prog'} (a NUL byte at byte 4))")):
        tokenize(str(tmp_path / "bin" / "*"), tmp_path / "o", tokenizer=tok)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("line, want", [
    ('{"text": "a",}', "not valid JSON (Expecting property name enclosed in double quotes at "
                       "column 14); each line of a .jsonl file is one JSON object"),
    ("text: a", "not valid JSON (Expecting value at column 1); each line of a .jsonl file is one "
                "JSON object"),
    ('["a", "b"]', "a JSON array, not an object; each line of a .jsonl file is one JSON object "
                   "with the text under key 'text' (--field names the key)"),
    ('"a"', "a JSON string, not an object; each line of a .jsonl file is one JSON object with "
            "the text under key 'text' (--field names the key)"),
    ("{}", "no key 'text'; the line has no keys (--field names the key that holds the text)"),
    ('{"body": "a", "id": 3}', "no key 'text'; the line has keys 'body', 'id' (--field names the "
                               "key that holds the text)"),
])
def test_a_jsonl_line_says_what_is_wrong_with_it(tmp_path, bpe, line, want):
    """A line that was not valid JSON said "no string under key 'text' (JSONDecodeError)"."""
    good = [json.dumps({"text": document(i)}) for i in range(12)]
    (tmp_path / "d.jsonl").write_text("\n".join([*good[:2], line, *good[2:]]) + "\n")
    with pytest.raises(D.DataError) as e:
        tokenize(str(tmp_path / "d.jsonl"), tmp_path / "o", tokenizer=bpe[0] / "tokenizer.json")
    assert str(e.value) == f"{tmp_path / 'd.jsonl'}:3: {want}"


@pytest.mark.parametrize("vocab", [0, 5, 256, -1])
def test_a_bpe_vocabulary_below_257_is_refused(folder, tmp_path, vocab):
    """--train-bpe 0 said 'give either --tokenizer FILE or --train-bpe VOCAB' (0 taken as not
    given); --train-bpe 5 gave a vocabulary of 257, silently."""
    with pytest.raises(D.DataError) as e:
        tokenize(str(folder), tmp_path / "o", bpe_vocab=vocab)
    assert str(e.value) == (f"--train-bpe {vocab}: a byte-level BPE holds the 256 bytes and "
                            "<|endoftext|>, so its vocabulary has at least 257 ids; allowed: an "
                            "integer >= 257 (50257 is GPT-2's)")
    assert not (tmp_path / "o").exists()


def test_the_command_line_refuses_a_small_bpe_vocabulary_in_one_line(folder, tmp_path, capsys):
    for vocab in ("0", "5"):
        assert main(["tokenize", str(folder), "--out", str(tmp_path / "o"), "--train-bpe",
                     vocab]) == 2
        err = capsys.readouterr().err
        assert f"--train-bpe {vocab}: a byte-level BPE holds the 256 bytes" in err
        assert "give either" not in err and len(err.strip().splitlines()) == 1


def test_options_are_checked_one_at_a_time_before_anything_is_read(folder, tmp_path, bpe):
    tok = bpe[0] / "tokenizer.json"
    for kwargs, want in [
        ({}, "give either --tokenizer FILE (a tokenizer.json) or --train-bpe VOCAB"),
        ({"tokenizer": tok, "bpe_vocab": 300}, f"--tokenizer {tok} and --train-bpe 300: give "
                                               "one of them"),
        ({"tokenizer": tok, "heldout_every": 1}, "--heldout-every 1: document i is held out "
                                                 "when i % 1 == 0; allowed: an integer >= 2"),
        ({"tokenizer": tok, "shard_tokens": 0}, "--shard-tokens 0: ids per shard; allowed: an "
                                                "integer >= 1"),
    ]:
        with pytest.raises(D.DataError) as e:
            tokenize(str(folder), tmp_path / "o", **kwargs)
        assert str(e.value) == want
    for name in ("", "a/b", ".hidden", "eval", "val"):
        with pytest.raises(D.DataError, match=re.escape(f"--name {name!r}: the shards' file-name "
                                                        "prefix; allowed: a non-empty name")):
            tokenize(str(folder), tmp_path / "o", tokenizer=tok, name=name)
    assert not (tmp_path / "o").exists()


def test_a_name_with_val_would_hold_out_the_wrong_shard(tmp_path):
    """Why --name refuses 'val': every shard of 'interval_*' has 'val' in its name, so none
    was told apart as held out and the last training shard was held out instead."""
    names = ["interval_val_000000.bin", "interval_train_000001.bin", "interval_train_000002.bin"]
    assert S.split_heldout([tmp_path / n for n in names])[1] == [tmp_path / names[-1]]


def test_a_bpe_that_cannot_reach_its_vocabulary_says_so(tmp_path, capsys):
    for i in range(10):
        (tmp_path / "t" / f"d{i}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "t" / f"d{i}.txt").write_text("ab " * 5)
    rec = tokenize(str(tmp_path / "t"), tmp_path / "o", bpe_vocab=5000)
    got = rec["tokenizer"]["vocab_size"]
    assert 257 <= got < 5000
    assert f"tokenize: --train-bpe 5000: the training documents gave a vocabulary of {got} " \
        f"(the 256 bytes, <|endoftext|> and {got - 257} merges" in capsys.readouterr().err
    rec = tokenize(str(tmp_path / "t"), tmp_path / "p", bpe_vocab=257)
    assert rec["tokenizer"]["vocab_size"] == 257 and capsys.readouterr().err == ""


def test_documents_with_no_text_are_refused_saying_so(tmp_path):
    """Twenty empty files said 'at least 10 are needed': there were enough, with no text."""
    tok = no_eot_tokenizer(tmp_path / "plain.json", [document(i) for i in range(5)])
    (tmp_path / "e").mkdir()
    for i in range(20):
        (tmp_path / "e" / f"d{i:02d}.txt").write_text("")
    with pytest.raises(D.DataError) as e:
        tokenize(str(tmp_path / "e"), tmp_path / "o", tokenizer=tok, separator="")
    assert str(e.value).startswith(f"{tmp_path / 'e'}: 20 document(s) in 20 file(s)")
    assert str(e.value).endswith("; the training documents hold no text (0 tokens); allowed: "
                                 "documents with text (an empty file or value is a document of "
                                 "no tokens)")
    assert not list((tmp_path / "o").glob("*.bin"))
