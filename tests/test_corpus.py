"""The offline-en corpus: dictd and fortune readers, whole held-out documents, a build that
reproduces its bytes, and a loader that refuses a damaged or stale copy."""

import gzip
import json
from pathlib import Path

import pytest
import torch

from suite import data as D
from suite.data import corpus as C


def _b64(n: int) -> str:
    digits = ""
    while True:
        digits = C._B64[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


HEADER = len(b"00-database-info\nthis is a header\n")


def write_dictd(root, db, articles, index_extra=()):
    """articles: [(headwords, text)]; each headword points at its article."""
    d = root / C.DICTD
    d.mkdir(parents=True, exist_ok=True)
    body, index, pos = b"", [], 0
    header = b"00-database-info\nthis is a header\n"  # HEADER bytes
    index.append(f"00-database-info\t{_b64(0)}\t{_b64(len(header))}")
    body, pos = header, len(header)
    for heads, text in articles:
        raw = text.encode()
        for h in heads:
            index.append(f"{h}\t{_b64(pos)}\t{_b64(len(raw))}")
        body += raw
        pos += len(raw)
    index += list(index_extra)
    (d / f"{db}.index").write_text("\n".join(index) + "\n")
    (d / f"{db}.dict.dz").write_bytes(gzip.compress(body))
    return body


def test_b64_offsets_decode_as_dictd_writes_them():
    assert C._b64("A") == 0 and C._b64("B") == 1 and C._b64("BA") == 64
    assert all(C._b64(_b64(n)) == n for n in (0, 63, 64, 4095, 123456789))


def test_dictd_groups_articles_by_letter_and_drops_the_header(tmp_path):
    write_dictd(tmp_path, "x", [(["apple"], "Apple. A fruit.\n"), (["Axe"], "Axe. A tool.\n"),
                                (["bee"], "Bee. An insect.\n"), (["1st"], "First.\n")])
    docs = dict(C.dictd_documents(tmp_path, "x"))
    assert docs == {"x/_other": b"First.\n", "x/a": b"Apple. A fruit.\nAxe. A tool.\n",
                    "x/b": b"Bee. An insect.\n"}


def test_dictd_reads_an_article_with_several_headwords_once(tmp_path):
    body = "Colour, Color. A hue.\n"
    write_dictd(tmp_path, "x", [(["colour", "color"], body), (["dog"], "Dog.\n")],
                # a headword pointing inside the first article: overlaps, must not duplicate it
                index_extra=[f"hue\t{_b64(HEADER + body.index('hue'))}\t{_b64(3)}"])
    docs = dict(C.dictd_documents(tmp_path, "x"))
    assert docs["x/c"] == body.encode()
    assert b"".join(docs.values()).count(b"A hue") == 1


def test_a_damaged_dictd_database_is_named(tmp_path):
    write_dictd(tmp_path, "x", [(["apple"], "Apple.\n")], index_extra=["pear\tB!\tC"])
    with pytest.raises(C.CorpusError, match=r"x\.index:3: offset and length must be dictd "
                       r"base64 .* got 'B!' 'C'"):
        C.dictd_documents(tmp_path, "x")
    (tmp_path / C.DICTD / "x.dict.dz").write_bytes(b"not gzip")
    with pytest.raises(C.CorpusError, match=r"x\.dict\.dz: not a readable dictzip file"):
        C.dictd_documents(tmp_path, "x")


def test_fortune_files_become_documents_without_separators(tmp_path):
    d = tmp_path / C.FORTUNES
    d.mkdir(parents=True)
    (d / "wisdom").write_bytes(b"Look up.\n%\nLook down.\n%\n")
    (d / "wisdom.dat").write_bytes(b"\x00\x01")
    (d / "wisdom.u8").write_bytes(b"ignored")
    (d / "._wisdom").write_bytes(b"\0\5\x16\x07")  # a macOS copy's AppleDouble file: no fortune
    assert C.fortune_documents(tmp_path) == [("fortunes/wisdom", b"Look up.\n\nLook down.\n\n")]


def test_held_out_documents_follow_the_every_tenth_rule():
    docs = [(f"d{i:02d}", bytes([i])) for i in range(25)]
    train, held = C.split_documents(docs)
    assert [n for n, _ in held] == ["d09", "d19"]
    assert len(train) == 23 and not {n for n, _ in train} & {"d09", "d19"}
    assert C.split_documents([("b", b"2"), ("a", b"1")])[1] == [("b", b"2")]


def fake_parts(tmp_path, write=True, lines=5):
    for db in ("alpha", "beta") if write else ():
        write_dictd(tmp_path, db, [([f"{c}word"], f"{db} {c} entry.\n" * lines)
                                   for c in "abcdefghijklmnop"])
    return tuple(C.Part(db, f"debian:dict-{db}", "public domain", db,
                        lambda root, db=db: C.dictd_documents(root, db))
                 for db in ("alpha", "beta"))


def test_build_then_load_round_trips_and_is_byte_for_byte_reproducible(tmp_path):
    parts = fake_parts(tmp_path)
    rec = C.build(tmp_path / "out", root=tmp_path, parts=parts)
    first = (tmp_path / "out" / "train.txt.gz").read_bytes()
    train, held, again = C.load(tmp_path / "out")
    assert again == rec and not (tmp_path / "out.partial").exists()
    assert [p["heldout"] for p in rec["parts"]] == [["alpha/j"], ["beta/j"]]
    assert b"alpha j entry" in held and b"alpha j entry" not in train
    assert b"beta a entry" in train and b"beta a entry" not in held
    assert rec["bytes"] == {"train": len(train), "heldout": len(held)}
    C.build(tmp_path / "out", root=tmp_path, parts=parts)
    assert (tmp_path / "out" / "train.txt.gz").read_bytes() == first


def _build_in_a_process(args):
    out, root = args
    C.build(Path(out), root=Path(root), parts=fake_parts(Path(root), write=False))
    return sorted(p.name for p in Path(out).parent.iterdir())


def test_builders_racing_in_a_job_array_all_succeed(tmp_path):
    """Field fault (MONAI#2374 and similar): three tasks building the corpus at once. With one
    fixed temporary folder that every builder deleted and renamed, two of three crashed with
    FileNotFoundError. Now each writes its own folder and the losers use the winner's."""
    import multiprocessing

    fake_parts(tmp_path, lines=20_000)  # once, before the builders; big enough to overlap
    out = tmp_path / "corpora" / "offline-en"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        listings = pool.map(_build_in_a_process, [(str(out), str(tmp_path))] * 6)
    assert all("offline-en" in names for names in listings)
    assert sorted(p.name for p in out.parent.iterdir()) == ["offline-en"]  # no leftovers
    train, held, rec = C.load(out)  # checksums hold: one whole corpus, not a mix
    assert rec["bytes"] == {"train": len(train), "heldout": len(held)}


def test_a_rebuild_with_other_text_replaces_an_outdated_corpus(tmp_path):
    parts = fake_parts(tmp_path)
    C.build(tmp_path / "out", root=tmp_path, parts=parts)
    write_dictd(tmp_path, "beta", [(["zword"], "beta changed entry.\n" * 5)] * 16)
    rec = C.build(tmp_path / "out", root=tmp_path, parts=parts)
    assert C.load(tmp_path / "out")[2] == rec
    assert b"beta changed entry" in C.load(tmp_path / "out")[0] + C.load(tmp_path / "out")[1]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_missing_packages_are_named_with_the_install_command(tmp_path):
    parts = fake_parts(tmp_path) + (C.Part("gamma", "debian:dict-gamma", "x", "x",
                                           lambda root: C.dictd_documents(root, "gamma")),)
    with pytest.raises(C.CorpusError, match=r"gamma \(debian:dict-gamma\).*gamma\.index: not "
                       r"found.*apt-get install"):
        C.build(tmp_path / "out", root=tmp_path, parts=parts)
    assert not (tmp_path / "out").exists()


def test_load_refuses_a_truncated_changed_or_stale_copy(tmp_path):
    out = tmp_path / "out"
    C.build(out, root=tmp_path, parts=fake_parts(tmp_path))
    gz = out / "heldout.txt.gz"
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes()) + b"extra"))
    with pytest.raises(C.CorpusError, match=r"heldout\.txt\.gz: sha256 differs from corpus\.json "
                       r"key 'sha256\.heldout'"):
        C.load(out)
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(C.CorpusError, match=r"heldout\.txt\.gz: cannot be read"):
        C.load(out)
    meta = out / "corpus.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 0}))
    with pytest.raises(C.CorpusError, match=r"corpus\.json: key 'format' is 0, this suite reads "
                       r"format 1"):
        C.load(out)
    meta.write_text("{")
    with pytest.raises(C.CorpusError, match=r"corpus\.json: not valid JSON"):
        C.load(out)


def test_the_data_source_says_how_to_get_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(C, "build", lambda out: (_ for _ in ()).throw(
        C.CorpusError(f"corpus 'offline-en' cannot be built; missing: x. {C.INSTALL_HINT}")))
    with pytest.raises(D.DataError, match=r"cannot be built.*apt-get install dict-gcide"):
        D.load_text("offline-en")


def test_the_data_source_reads_a_built_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path))
    C.build(C.default_dir(), root=tmp_path, parts=fake_parts(tmp_path))
    d = D.load_text("offline-en")
    train, held, rec = C.load()
    assert bytes(d.train.ids().to(torch.uint8).numpy()) == train
    assert len(d.heldout) == len(held) and d.heldout_names == ("alpha/j", "beta/j")
    assert d.vocab_size == 256 and rec["sha256"]["train"][:12] in d.source


def test_real_parts_split_like_the_shakespeare_source():
    try:
        docs = C.shakespeare_documents(C.Path("/"))
    except C.CorpusError:
        pytest.skip("shakespeare not installed")
    held = [n.split("/", 1)[1] + ".txt" for n, _ in C.split_documents(docs)[1]]
    assert tuple(held) == D.load_text("shakespeare").heldout_names


def test_the_real_corpus_builds_from_its_packages_under_60_mb(tmp_path):
    """Where the Debian packages are installed (CI installs them): every part reads, held-out
    documents are whole letters and plays, and what a GPU machine needs stays under 60 MB."""
    try:
        rec = C.build(tmp_path / "real")
    except C.CorpusError as e:
        pytest.skip(str(e))
    parts = {p["name"]: p for p in rec["parts"]}
    assert set(parts) == {p.name for p in C.PARTS}
    assert parts["gcide"]["heldout"] == ["gcide/i", "gcide/s"]
    assert all(p["version"] != "unknown" for p in rec["parts"])
    assert 40e6 < rec["bytes"]["train"] + rec["bytes"]["heldout"] < 60e6
    assert 0.08 < rec["bytes"]["heldout"] / rec["bytes"]["train"] < 0.2
    on_disk = sum(f.stat().st_size for f in (tmp_path / "real").iterdir())
    assert on_disk < 60e6
    train, held, _ = C.load(tmp_path / "real")
    assert b"Abdication" in train and b"To be, or not to be" in train  # A; Hamlet is trained on
    assert b"Macbeth" in held  # a held-out play
