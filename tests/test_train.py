"""The one training loop: schedules, optimiser groups, the bf16 path, divergence."""

import math

import pytest
import torch

from suite import data as D
from suite.families import FAMILIES, Inputs, logits
from suite.run.train import (
    Clock,
    Diverged,
    Loop,
    Optim,
    Stage,
    evaluate,
    lr_factor,
    make_optimizer,
    train,
)

FAM = FAMILIES["decoder"]
SIZE = {"hidden": 32, "layers": 2, "heads": 2}
INPUTS = Inputs(seq_len=16, vocab_size=256)


def out(m, x):
    return logits(FAM, m, x)


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        w = torch.randint(0, 256, (4, 17), generator=g)
        yield w[:, :-1], w[:, 1:]


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_then_decay_endpoints(decay):
    o = Optim(optimizer="adamw", lr=1.0, warmup=0.1, decay=decay, min_lr_ratio=0.1)
    total = 100
    assert lr_factor(0, total, o) == pytest.approx(0.1)  # (step + 1) / warm-up steps
    assert lr_factor(9, total, o) == pytest.approx(1.0)
    assert lr_factor(10, total, o) == pytest.approx(1.0)
    assert lr_factor(55, total, o) == pytest.approx(0.55)  # halfway: both shapes give 0.5
    assert lr_factor(100, total, o) == pytest.approx(0.1)  # the floor
    values = [lr_factor(i, total, o) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_constant_schedule_and_no_warmup():
    o = Optim(optimizer="sgd", lr=0.5, decay="constant")
    assert {lr_factor(i, 50, o) for i in range(50)} == {1.0}


def test_no_weight_decay_on_biases_and_norms():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    opt = make_optimizer(model, Optim(optimizer="adamw", lr=1e-3, weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert all(p.dim() < 2 for p in plain["params"])
    n = sum(1 for p in model.parameters())
    assert len(decayed["params"]) + len(plain["params"]) == n
    with pytest.raises(ValueError, match="allowed: adamw, sgd"):
        make_optimizer(model, Optim(optimizer="lamb", lr=1e-3))


def test_clock_counts_steps_flops_and_last_loss_is_finite():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    clock = Clock()
    seen = []
    last = train(model, _batches(), Stage(12, Optim(optimizer="adamw", lr=1e-3), 1000), clock,
                 Loop(out, check_every=4, on_step=lambda c, loss: seen.append(c.step)))
    assert clock.step == 12 and clock.flops == 12_000 and seen == list(range(1, 13))
    assert math.isfinite(last) and clock.wall_s > 0


def test_bf16_autocast_path_runs_on_cpu_and_differs_from_fp32():
    data = D.TextData(torch.zeros(10, dtype=torch.long), torch.randint(0, 256, (400,)), 256, 1.0,
                      "random", ())
    held = D.heldout_batches(data, "causal-lm", 4, 16, 2)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = FAM.build(SIZE, INPUTS)
        train(model, _batches(), Stage(5, Optim(optimizer="adamw", lr=1e-3), 1), Clock(),
              Loop(out, precision=precision))
        ev = evaluate(model, held, out, torch.device("cpu"), precision, False)
        losses[precision] = ev["loss"]
    assert all(math.isfinite(v) for v in losses.values())
    assert losses["fp32"] != losses["bf16"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_nan_loss_raises_diverged():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))  # tied: poisons the embedding and the logits
    with pytest.raises(Diverged, match="training loss nan at step"):
        train(model, _batches(), Stage(8, Optim(optimizer="sgd", lr=0.1), 1), Clock(),
              Loop(out, check_every=4))


def test_compiled_training_follows_the_eager_curve(tmp_path):
    """--compile (torch.compile, inductor on CPU): same curve within float tolerance, and the
    FLOPs are still the fvcore count of the eager model."""
    from suite.registry import load_benchmarks
    from suite.results import read_run
    from suite.run.executor import RunOptions, run_one

    bench = load_benchmarks()["ode"]
    eager = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / "e",
                             RunOptions(threads=1, progress=False)))
    comp = read_run(run_one(bench, "smoke", "baseline", 0, tmp_path / "c",
                            RunOptions(threads=1, progress=False, compile=True)))
    assert comp.manifest["compile"] is True and comp.complete
    assert [r["flops"] for r in comp.curve] == [r["flops"] for r in eager.curve]
    for a, b in zip(comp.curve, eager.curve, strict=True):
        assert a["heldout_loss"] == pytest.approx(b["heldout_loss"], abs=1e-3)


def test_mfu_only_for_known_devices_in_bf16():
    from suite.flops import bf16_peak, mfu

    flops, wall_s = int(989e12), 2.0
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert mfu(flops, wall_s, "NVIDIA H100 80GB HBM3", 1, "bf16") == pytest.approx(0.5)
    assert mfu(flops, wall_s, "NVIDIA H100 80GB HBM3", 2, "bf16") == pytest.approx(0.25)
    assert mfu(flops, wall_s, "AMD EPYC", 1, "bf16") is None  # unknown: never a made-up MFU
    assert mfu(flops, wall_s, "NVIDIA H100 80GB HBM3", 1, "fp32") is None
    assert mfu(flops, 0.0, "NVIDIA H100 80GB HBM3", 1, "bf16") is None


def test_throughput_probe_reports_the_meter_flops_per_second(tmp_path, monkeypatch):
    import json

    from suite.cli import main
    from suite.registry import load_benchmarks
    from suite.run import throughput as runner

    bench = load_benchmarks()["gpt"]
    r = runner.measure_throughput(bench, "smoke", steps=3, warmup=1, threads=1)
    scale = bench.scale("smoke")
    assert r["steps"] == 3 and r["step_flops"] > 0 and r["mfu"] is None  # CPU: no MFU
    assert r["throughput_per_s"] == pytest.approx(3 * scale.batch_size * scale.seq_len
                                                  / r["wall_s"])
    assert r["achieved_flops_per_s"] == pytest.approx(3 * r["step_flops"] / r["wall_s"])
    # a known device in bf16 (autocast runs on CPU): MFU against its peak
    monkeypatch.setattr(runner, "environment", lambda d, t: {"device_name": "NVIDIA H100 PCIe"})
    r = runner.measure_throughput(bench, "smoke", precision="bf16", steps=2, warmup=0, threads=1)
    assert r["precision"] == "bf16"
    assert r["mfu"] == pytest.approx(r["achieved_flops_per_s"] / 756e12)
    with pytest.raises(runner.SpecError, match=r"steps.*steps >= 1"):
        runner.measure_throughput(bench, "smoke", steps=0)
    monkeypatch.undo()
    assert main(["throughput", "gpt", "--scale", "smoke", "--steps", "2", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path)]) == 0
    [file] = (tmp_path / "throughput").glob("gpt-smoke-eager-*.json")  # named after the device
    saved = json.loads(file.read_text())
    assert saved["benchmark"] == "gpt" and saved["compile"] is False
    assert saved["environment"]["git"]["commit"]


def _labelled_batches():
    """Three batches with 64, 40 and 16 labelled positions (the rest -100): unequal weights."""
    g = torch.Generator().manual_seed(5)
    out = []
    for keep in (16, 10, 4):
        w = torch.randint(0, 256, (4, 17), generator=g)
        y = w[:, 1:].clone()
        y[:, keep:] = -100
        out.append((w[:, :-1], y))
    return out


def test_evaluate_halves_are_token_weighted_parts_of_the_loss():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    batches = _labelled_batches()
    cpu = torch.device("cpu")
    ev = evaluate(model, batches, out, cpu, "fp32", True, halves=True)
    assert (ev["tokens_a"], ev["tokens_b"]) == (64, 40 + 16)  # floor / ceil of 3 batches
    assert ev["loss_a"] == evaluate(model, batches[:1], out, cpu, "fp32", False)["loss"]
    assert ev["loss_b"] == pytest.approx(evaluate(model, batches[1:], out, cpu, "fp32",
                                                  False)["loss"], abs=1e-12)
    mixed = (64 * ev["loss_a"] + 56 * ev["loss_b"]) / 120
    assert abs(ev["loss"] - mixed) <= 1e-12
    assert ev["loss"] != (ev["loss_a"] + ev["loss_b"]) / 2  # weighted, not a plain mean
    plain = evaluate(model, batches, out, cpu, "fp32", True)
    assert plain["loss"] == ev["loss"] and plain["top1"] == ev["top1"]
    assert "loss_a" not in plain and 0 <= plain["top1"] <= 1


def test_evaluate_one_batch_has_no_first_half_and_no_labels_is_an_error():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    cpu = torch.device("cpu")
    one = _labelled_batches()[:1]
    ev = evaluate(model, one, out, cpu, "fp32", False, halves=True)
    assert "loss_a" not in ev and ev["tokens_a"] == 0 and ev["loss_b"] == ev["loss"]
    x, y = one[0]
    with pytest.raises(ValueError, match="evaluation over 1 batch\\(es\\) without a labelled "
                                         "position"):
        evaluate(model, [(x, torch.full_like(y, -100))], out, cpu, "fp32", False)


def test_diverged_names_its_step_and_quantity():
    torch.manual_seed(0)
    model = FAM.build(SIZE, INPUTS)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    clock = Clock(step=7)
    with pytest.raises(Diverged) as e:
        train(model, _batches(), Stage(3, Optim(optimizer="sgd", lr=0.1), 1), clock,
              Loop(out, check_every=1))
    assert e.value.step == 8 and e.value.quantities == ("minibatch training loss",)
    assert str(e.value) == "training loss nan at step 8"
