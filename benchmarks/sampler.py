"""Token sampler at corpus scale (issue 13): resident memory and tokens/s while drawing training
batches from 1e8, 1e9 and 1e10-token shard sets. `nox -s bench-sampler` (or
`python benchmarks/sampler.py --out results/paper-path/sampler.md`).

Each size is a folder of modded-nanogpt `.bin` shards of 1e8 uint16 ids (sparse files: a
header and a hole, no disk), loaded through the suite's own path (`suite.data.load_text`,
which checks every id against the vocabulary, then `TrainBatches`), in a fresh process per size
so that resident memory is that size's alone. Reported: RSS after loading, after warm-up,
and the largest seen while sampling (sampled every 50 batches), and tokens per second on one
CPU thread. Goals: flat, under 1.5 GB, at least 1M tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARD = 10**8
SIZES = (10**8, 10**9, 10**10)
BATCH, SEQ = 16, 1024  # GPT-2 small's micro-batch shape
VOCAB = 50257


def rss_mb() -> float:
    """Resident set size of this process, MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_shards(folder: Path, tokens: int) -> None:
    header = np.zeros(256, dtype="<i4")
    for i in range(tokens // SHARD):
        header[:3] = 20240520, 1, SHARD
        split = "val" if i == 0 else "train"
        path = folder / f"fineweb_{split}_{i:06d}.bin"
        with open(path, "wb") as f:
            f.write(header.tobytes())
            f.truncate(1024 + 2 * SHARD)


def measure(folder: str, batches: int) -> dict:
    import torch

    from suite.data import TrainBatches, load_text

    torch.set_num_threads(1)
    start = rss_mb()
    t0 = time.perf_counter()
    data = load_text(folder, VOCAB)
    load_s = time.perf_counter() - t0
    loaded = rss_mb()
    stream = TrainBatches(data, "causal-lm", BATCH, SEQ, seed=0)
    for _ in range(20):
        next(stream)
    warm = rss_mb()
    peak = warm
    t0 = time.perf_counter()
    for i in range(batches):
        next(stream)
        if i % 50 == 0:
            peak = max(peak, rss_mb())
    dt = time.perf_counter() - t0
    return {"tokens": len(data.train) + len(data.heldout), "rss_start_mb": start,
            "rss_loaded_mb": loaded, "rss_warm_mb": warm, "rss_peak_mb": max(peak, rss_mb()),
            "load_and_check_s": load_s, "tokens_per_s": batches * BATCH * SEQ / dt}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the markdown table here too")
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--measure", help=argparse.SUPPRESS)  # the child process: one folder
    p.add_argument("--make-only", nargs=2, metavar=("DIR", "TOKENS"),
                   help="only write a sparse shard set of TOKENS ids into DIR")
    args = p.parse_args()
    if args.make_only:
        Path(args.make_only[0]).mkdir(parents=True, exist_ok=True)
        make_shards(Path(args.make_only[0]), int(args.make_only[1]))
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure, args.batches)))
        return 0
    rows = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            make_shards(Path(tmp), size)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run([sys.executable, __file__, "--measure", tmp, "--batches",
                                   str(args.batches)], capture_output=True, text=True, env=env,
                                  check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    lines = ["| tokens | shards | RSS start MB | RSS loaded MB | RSS warm MB | RSS peak MB | "
             "load + id check s | tokens/s (1 thread) |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['tokens']:.0e} | {r['tokens'] // SHARD} | {r['rss_start_mb']:.0f} | "
                     f"{r['rss_loaded_mb']:.0f} | {r['rss_warm_mb']:.0f} | "
                     f"{r['rss_peak_mb']:.0f} | {r['load_and_check_s']:.1f} | "
                     f"{r['tokens_per_s']:,.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# Token sampler at corpus scale\n\n`{' '.join(sys.argv)}`, "
                                  f"batch {BATCH} x {SEQ} tokens, vocabulary {VOCAB}\n\n"
                                  f"{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
