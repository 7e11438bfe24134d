"""Images streamed from a class-per-folder tree (issue 13): a generated tree of 2,000 PNGs read
through a DataLoader with workers and timm's transforms, reproducible and resumable at any
batch, with nothing but file names held in memory."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from suite import data as D
from suite.data import images as streamed
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run.executor import RunOptions, run_one
from suite.spec import with_data_source

CLASSES, PER_CLASS, SIDE = 4, 500, 28


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir()
        for i in range(PER_CLASS):
            pixels = rng.integers(0, 64, (SIDE, SIDE, 3), dtype=np.uint8) + 60 * c
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i:04d}.png")
    return root


def batches(images, seed, n, start=None):
    stream = D.TrainBatches(images, "classify", 32, 0, seed)
    if start is not None:
        stream.load_state_dict(start)
    return [next(stream) for _ in range(n)], stream


def test_the_tree_is_split_by_whole_files_and_held_as_names(tree):
    images = D.load_images(str(tree))
    assert isinstance(images, streamed.FolderImages)
    assert (images.num_classes, images.channels, images.image_size) == (CLASSES, 3, SIDE)
    assert len(images.train) == CLASSES * 450 and len(images.heldout) == CLASSES * 50
    assert all(name.endswith(("9.png",)) for name, _ in images.heldout)
    # nothing but names and labels: no pixel is read before a batch is drawn
    held = [v for f in dataclasses.fields(images) if isinstance(v := getattr(images, f.name),
                                                                 (torch.Tensor, np.ndarray))]
    assert held == []
    assert images.source == f"{tree} (4 classes, 1800/200 images, streamed)"


@pytest.mark.parametrize("augment", ["none", "deit"])
def test_streamed_batches_are_reproducible_and_resumable(tree, augment):
    images = D.load_images(str(tree), augment=augment)
    assert images.workers >= 1  # worker processes read and transform
    first, stream = batches(images, 0, 60)  # 60 x 32 > 1800: crosses an epoch
    x, y = first[0]
    assert x.shape == (32, 3, SIDE, SIDE) and x.dtype == torch.float32
    assert 0 <= int(y.min()) and int(y.max()) < CLASSES
    again, _ = batches(images, 0, 60)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(first, again, strict=True))
    other, _ = batches(images, 1, 1)
    assert not torch.equal(other[0][0], first[0][0])
    # an epoch visits 56 x 32 distinct images of the 1,800 (the last incomplete batch dropped)
    order = streamed.FolderStream(images, 32, 0)._indices(0)
    epoch = [i for _ in range(56) for i, _ in next(order)]
    assert len(set(epoch)) == 56 * 32 and max(epoch) < 1800
    _, stream = batches(images, 0, 17)
    state = stream.state_dict()
    later, _ = batches(images, 0, 10, start=state)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(later, first[17:27], strict=True))


def test_a_rank_streams_only_its_rows(tree):
    """Issue 13: under torchrun a rank's loader opens its share of each global batch's files
    only; the shares put together are the single-process batch."""
    images = D.load_images(str(tree))
    whole, _ = batches(images, 3, 2)
    order = streamed.FolderStream(images, 32, 3, slice(8, 16))._indices(0)
    assert len(next(order)) == 8
    parts = [[next(s) for _ in range(2)] for s in
             (D.TrainBatches(images, "classify", 32, 0, 3, rank=r, ranks=4) for r in range(4))]
    for k, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([p[k].x for p in parts]), x)
        assert torch.equal(torch.cat([p[k].y for p in parts]), y)
        assert {p[k].labelled for p in parts} == {32}


def test_the_deit_recipe_is_timms(tree):
    from timm.data import create_transform

    images = D.load_images(str(tree), augment="deit")
    names = [type(t).__name__ for t in images.transform(True).transforms]
    assert names[0] == "RandomResizedCropAndInterpolation" and "RandAugment" in names
    assert names[-1] == "RandomErasing"
    want = create_transform((3, SIDE, SIDE), is_training=True, color_jitter=0.3,
                            auto_augment="rand-m9-mstd0.5-inc1-mmax9", interpolation="bicubic",
                            re_prob=0.25, re_mode="pixel", re_count=1)
    assert repr(images.transform(True)) == repr(want)


def test_a_bad_tree_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(D.DataError, match=r"class folder\(s\) \['b'\] hold no image"):
        D.load_images(str(tmp_path))
    with pytest.raises(D.DataError, match=r"data.augment = 'autoaug'; allowed: none, deit"):
        D.load_images(str(tmp_path), augment="autoaug")


def test_a_vit_trains_on_the_stream(tree, tmp_path):
    bench = with_data_source(load_benchmarks()["deit"], "smoke", str(tree))
    run = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path,
                           RunOptions(threads=1, progress=False)))
    assert run.complete, run.summary["error"]
    assert run.manifest["data"]["source"].endswith("1800/200 images, streamed)")
    assert run.manifest["data"]["inputs"]["channels"] == 3
    assert run.curve[-1]["heldout_loss"] < run.curve[0]["heldout_loss"]


# ---------------------------------------------------------------- faults from field reports


def small_tree(root, per_class=20, side=8):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(
                root / c / f"{i:02d}.png")
    return root


def test_dot_folders_are_no_class_and_dot_files_no_image(tmp_path, capsys):
    """vision#109: a `.ipynb_checkpoints` folder became a class and macOS's `._x.png` copies
    images (which fail to read); both shifted the sorted order that picks held-out files."""
    root = small_tree(tmp_path / "t")
    clean = D.load_images(str(root))
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes((root / "cat" / "00.png").read_bytes())
    (root / "cat" / "._00.png").write_bytes(b"\0\5\x16\x07" * 20)
    (root / "dog" / ".thumbs").mkdir()
    (root / "dog" / ".thumbs" / "00.png").write_bytes((root / "dog" / "00.png").read_bytes())
    (root / "dog" / "notes.txt").write_text("not an image")
    d = D.load_images(str(root))
    assert d.classes == clean.classes == ["cat", "dog"]
    assert (d.train, d.heldout) == (clean.train, clean.heldout)
    assert d.files == {"read": 40, "skipped": {".txt": 1, "(hidden)": 3}}
    assert capsys.readouterr().err == f"{root}: read 40 file(s); skipped 3 (hidden), 1 .txt\n"


def test_a_damaged_image_is_named_before_training(tmp_path):
    """stylegan2-pytorch#7: a corrupt PNG or a truncated JPEG ended training with a 60-77-line
    traceback that named no file. Every image is checked at load: one line naming each."""
    from PIL import Image

    root = small_tree(tmp_path / "t")
    png = root / "cat" / "03.png"
    png.write_bytes(png.read_bytes()[:60] + b"\0" * 40 + png.read_bytes()[100:])  # bad CRC
    jpg = root / "dog" / "19.jpg"  # a held-out file
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:-2000])  # a download cut short: its header is whole
    with pytest.raises(D.DataError) as e:
        D.load_images(str(root))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{root}: 2 image(s) cannot be read: {png} (")
    assert f"; {jpg} (OSError: " in msg
    assert msg.endswith("; remove or replace them")
    ok = root / "dog" / "18.jpg"  # data after the end marker, as some cameras write: readable
    Image.fromarray(np.full((8, 8, 3), 9, dtype=np.uint8)).save(ok)
    ok.write_bytes(ok.read_bytes() + b"trailer")
    png.unlink()
    jpg.unlink()
    assert len(D.load_images(str(root)).train) == 37


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_damaged_after_loading_is_one_line_naming_it(tmp_path, workers):
    """What the check at load cannot see (a file changed since) is a DataError naming the file
    when it is read, from a DataLoader worker process too, and for the held-out batches."""
    root = small_tree(tmp_path / "t")
    images = dataclasses.replace(D.load_images(str(root)), workers=workers)
    for f, _ in images.train + images.heldout:
        Path(f).write_bytes(Path(f).read_bytes()[:50])
    with pytest.raises(D.DataError) as e:
        next(D.TrainBatches(images, "classify", 4, 0, seed=0))
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and "DataLoader" not in msg
    assert re.fullmatch(rf"{re.escape(str(root))}/(cat|dog)/\d\d\.png: not a readable image "
                        r"\(OSError: .*\)", msg), msg
    with pytest.raises(D.DataError, match=re.escape(f"{images.heldout[0][0]}: not a readable "
                                                    "image (OSError: ")):
        D.heldout_batches(images, "classify", 2, 0, 1)
