"""`python -m suite run --dry-run` (suite/run/pricing.py): the figures it prints are never
rounded to 0, and a figure it cannot give ('-') is explained below the table."""

import pytest

from suite.data import corpus
from suite.run import pricing
from suite.spec import with_data_source


def table(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[:1] + lines[2:]]


@pytest.fixture
def gpt(builtin_benchmarks):
    return builtin_benchmarks["gpt"]


def test_a_small_fraction_of_a_pass_is_not_printed_as_0(gpt, tmp_path):
    """`run gpt --scale smoke --dry-run` printed its passes over Shakespeare (0.0011) as 0."""
    for i in range(12):
        (tmp_path / f"w{i:02d}.txt").write_bytes(b"x" * 100_000)
    bench = with_data_source(gpt, "smoke", str(tmp_path))
    out = pricing.price(bench, bench.scale("smoke"), ["baseline"], 1e-5)
    rows = table(out)
    seen = 20 * 8 * 32  # steps x batch x seq_len
    assert rows[1][6] == f"{seen / 1_100_000:.2g}" == "0.0047"  # 11 training files of 100 kB
    assert float(rows[1][7]) == pytest.approx(float(rows[1][3]) / 1e7 / 60, rel=0.05)
    assert "Passes over the data: -" not in out


def test_figures_keep_two_significant_digits_below_1():
    assert [pricing._figure(x) for x in (0.0011, 0.35, 0.96, 1.0, 2.34, 1234.5, 0.0)] == \
        ["0.0011", "0.35", "0.96", "1.0", "2.3", "1234.5", "0.0"]
    assert [pricing._share(x) for x in (1.0, 0.095, 0.001, 0.0004, 0.0)] == \
        ["100.0%", "9.5%", "0.1%", "0.04%", "0.0%"]


def test_a_dash_says_why(gpt, tmp_path, monkeypatch):
    """At the small scale without offline-en built, passes were '-' with no reason."""
    monkeypatch.setenv("SUITE_DATA_DIR", str(tmp_path / "nowhere"))
    bench = with_data_source(gpt, "smoke", corpus.NAME)
    out = pricing.price(bench, bench.scale("smoke"), ["baseline"], None)
    assert table(out)[1][6] == "-"
    want = (f"Passes over the data: -, the training tokens of data.source = 'offline-en' not "
            f"counted: data source 'offline-en': {tmp_path / 'nowhere' / 'offline-en'}/"
            "corpus.json not found: the corpus is not built.")
    assert out.splitlines()[-1].startswith(want)  # one line, below the table and convention
    user = with_data_source(gpt, "smoke", "user")
    out = pricing.price(user, user.scale("smoke"), ["baseline"], None)
    assert out.splitlines()[-1] == ("Passes over the data: -, the training tokens of "
                                    "data.source = 'user' not counted: this scale reads your "
                                    "data: pass --data PATH to count it")
    bad = with_data_source(gpt, "smoke", str(tmp_path / "missing"))
    out = pricing.price(bad, bad.scale("smoke"), ["baseline"], None)
    assert out.splitlines()[-1].startswith(
        f"Passes over the data: -, the training tokens of data.source = "
        f"'{tmp_path / 'missing'}' not counted: data source '{tmp_path / 'missing'}': no such "
        "file or folder; allowed: ")
