"""The CUDA path, for real: skipped without a GPU (CI), run on a lent GPU machine with
`bash ci/device.sh pytest tests/test_cuda.py`. Data: the suite's own source as text, so that
nothing beyond the tree needs to travel."""

from pathlib import Path

import pytest
import torch

from suite import flops
from suite.registry import load_benchmarks
from suite.results import read_run
from suite.run.executor import RunOptions, run_one
from suite.run.throughput import measure_throughput
from suite.spec import with_data_source

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ARMS = ["baseline", "vcycle", "ode-multilevel"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    src = Path(__file__).resolve().parents[1] / "suite"
    path = tmp_path_factory.mktemp("text") / "suite-source.txt"
    path.write_bytes(b"\n".join(p.read_bytes() for p in sorted(src.glob("*.py"))))
    return path


@pytest.fixture(scope="module")
def gpt(text):
    return with_data_source(load_benchmarks()["gpt"], "smoke", str(text))


@pytest.mark.parametrize("arm", ARMS)
@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.1), ("fp32", 0.02)])
def test_cuda_follows_the_cpu_curve(gpt, arm, precision, tolerance, tmp_path):
    """Same plan, same FLOPs, the same curve within the precision's tolerance (held-out loss in
    nats; fp32 on CUDA uses TF32 matmuls); transfers keep every model on the device."""
    cpu = read_run(run_one(gpt, "smoke", arm, 0, tmp_path / "cpu",
                           RunOptions(threads=1, progress=False)))
    gpu = read_run(run_one(gpt, "smoke", arm, 0, tmp_path / "gpu",
                           RunOptions(device="cuda", precision=precision, progress=False)))
    assert gpu.complete and gpu.manifest["precision"] == precision
    assert [r["flops"] for r in gpu.curve] == [r["flops"] for r in cpu.curve]
    diffs = [abs(a["heldout_loss"] - b["heldout_loss"]) for a, b in zip(gpu.curve, cpu.curve,
                                                                        strict=True)]
    assert max(diffs) < tolerance, diffs
    name = gpu.manifest["environment"]["device_name"]
    known = flops.bf16_peak(name) is not None
    assert (gpu.summary["mfu"] is not None) == (known and precision == "bf16"), name


@pytest.mark.parametrize("compile", [False, True])
def test_cuda_throughput_probe(gpt, compile):
    r = measure_throughput(gpt, "smoke", device="cuda", compile=compile, steps=20, warmup=5)
    assert r["precision"] == "bf16" and r["compile"] is compile
    assert r["achieved_flops_per_s"] == pytest.approx(20 * r["step_flops"] / r["wall_s"])
    peak = flops.bf16_peak(r["environment"]["device_name"])
    if peak is not None:
        assert r["mfu"] == pytest.approx(r["achieved_flops_per_s"] / peak)
