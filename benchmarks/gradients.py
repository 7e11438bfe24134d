"""One step's gradient under accumulation and DDP, every family (issue 13): max relative
difference from one process at --accum 1, for --accum 2 and 4 and for two gloo processes, and
the same for the equal-weight mean of micro-batch means (the normalisation bug) for contrast.
`python benchmarks/gradients.py --out results/paper-path/gradients.md` (CPU; two processes
via torchrun).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_accumulation import BENCH_OF, gradient, relative, setup_family  # noqa: E402

from suite.families import logits  # noqa: E402


def naive(family, model, batch, accum: int) -> torch.Tensor:
    """The bug: every micro-batch's mean loss weighted 1/accum, whatever it holds."""
    model.zero_grad(set_to_none=True)
    x, y = batch
    for xm, ym in zip(x.chunk(accum), y.chunk(accum), strict=True):
        z = logits(family, model, xm)
        (F.cross_entropy(z.reshape(-1, z.size(-1)), ym.reshape(-1), ignore_index=-100)
         / accum).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def two_processes() -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        script, saved = Path(tmp) / "g.py", Path(tmp) / "g.pt"
        script.write_text(
            "import sys, torch\n"
            "from torch.nn.parallel import DistributedDataParallel as DDP\n"
            f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
            "from test_accumulation import BENCH_OF, gradient, setup_family\n"
            "from suite.run.distributed import leave, setup, teardown\n"
            "world, _ = setup('cpu')\n"
            "g = {}\n"
            "for n in sorted(BENCH_OF):\n"
            "    f, m, b = setup_family(n)\n"
            "    g[n] = gradient(f, m, b, 1, world, DDP(m))\n"
            "if world.main:\n"
            "    torch.save(g, sys.argv[1])\n"
            "teardown()\n"
            "leave(0)  # DDP's gloo threads can abort the interpreter's shutdown\n")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", str(script), str(saved)], env=env, check=True,
                       capture_output=True)
        return torch.load(saved)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    ddp = two_processes()
    rows = []
    for name in sorted(BENCH_OF):
        family, model, batch = setup_family(name)
        g1 = gradient(family, model, batch, 1)
        cells = [f"{relative(gradient(family, model, batch, k), g1):.1e}" for k in (2, 4)]
        cells.append(f"{relative(ddp[name], g1):.1e}")
        cells += [f"{relative(naive(family, model, batch, k), g1):.1e}" for k in (2, 4)]
        rows.append(f"| {name} ({BENCH_OF[name]} smoke) | " + " | ".join(cells) + " |")
    table = "\n".join(["| family | accum 2 | accum 4 | 2 processes | accum 2, equal-weight "
                       "means (the bug) | accum 4, the bug |", "|---|---|---|---|---|---|",
                       *rows])
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            "# One step's gradient under accumulation and DDP\n\n"
            f"`python benchmarks/gradients.py --out {args.out}`: max |g - g1| / max |g1| against "
            "one process at --accum 1, the first global batch of seed 0 at smoke scale.\n\n"
            f"{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
