"""The FLOP meter: fvcore forward counts per (family, size, input shape), counted once and cached.

Convention, printed in every report:
- fvcore counts one fused multiply-add as one flop (it reports MACs); we report FLOPs = 2 x MACs.
- fvcore counts scaled_dot_product_attention as zero, so counting uses a copy of the model built
  with eager (math) attention, whatever kernel training uses.
- A training step costs 3 x its forward (backward = 2 x forward). tests/test_flops.py checks this
  against torch.utils.flop_counter.FlopCounterMode forward + backward for every family.
"""

from __future__ import annotations

import functools
import logging
import warnings

import torch
from torch import nn

with warnings.catch_warnings():  # fvcore's import scripts a function; torch warns jit is deprecated
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from suite.families import FAMILIES, Family, Inputs, logits

CONVENTION = ("FLOPs = 2 x fvcore MACs (one multiply-add = 2 FLOPs), attention counted on the "
              "eager path, one training step = 3 x forward, evaluation not counted; operators "
              "(coalesce, de-coalesce, interpolate, restrict, prolongate) counted per parameter, "
              "stacking (copies) 0, a plug-in's operator as it reports")
TRAIN_FACTOR = 3


class _Logits(nn.Module):
    def __init__(self, family: Family, model: nn.Module) -> None:
        super().__init__()
        self.family, self.model = family, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits(self.family, self.model, x)


def example_input(family: Family, inputs: Inputs, batch: int) -> torch.Tensor:
    if family.data_kind == "images":
        return torch.zeros(batch, inputs.channels, inputs.image_size, inputs.image_size)
    return torch.zeros(batch, inputs.seq_len, dtype=torch.long)


@functools.lru_cache(maxsize=256)
def _count(family_name: str, size: tuple[tuple[str, int], ...], inputs: Inputs,
           batch: int) -> tuple[int, int]:
    family = FAMILIES[family_name]
    # the global RNG is the run's: a cold or warm cache (a resumed process) must not move it
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        model = family.build(dict(size), inputs, eager_attention=True).eval()
    x = example_input(family, inputs, batch)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    fa = FlopCountAnalysis(_Logits(family, model), (x,))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    with warnings.catch_warnings():  # fvcore traces with torch.jit, which warns it is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        by_module = fa.by_module()
    blocks = by_module.get(f"model.{family.layout.blocks}", 0)
    return 2 * int(fa.total()), 2 * int(blocks)


def forward_flops(family: Family, size: dict[str, int], inputs: Inputs, batch: int,
                  blocks_only: bool = False) -> int:
    """FLOPs of one forward pass on `batch` examples; `blocks_only` excludes embeddings and head.
    Counted on one example and multiplied: every op is linear in the batch (a test checks it),
    and tracing a paper-size model at its full batch would cost minutes of CPU."""
    total, blocks = _count(family.name, tuple(sorted(size.items())), inputs, 1)
    return batch * (blocks if blocks_only else total)


def train_step_flops(family: Family, size: dict[str, int], inputs: Inputs, batch: int,
                     blocks_only: bool = False) -> int:
    return TRAIN_FACTOR * forward_flops(family, size, inputs, batch, blocks_only)


# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, matched by name. A device
# not listed reports achieved FLOP/s only: no MFU is ever guessed.
BF16_PEAK = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def bf16_peak(device_name: str) -> float | None:
    for key, peak in BF16_PEAK.items():  # the more specific names come first
        if key in device_name:
            return peak
    return None


def mfu(flops: float, wall_s: float, device_name: str, devices: int,
        precision: str) -> float | None:
    """Model FLOP utilisation: `flops` (the meter's count) over `wall_s` seconds on `devices`
    devices, as a fraction of their dense bf16 peak (BF16_PEAK). None for an unknown device, no
    time, or a run not in bf16 (against another precision's peak the figure means nothing)."""
    peak = bf16_peak(device_name)
    if peak is None or precision != "bf16" or not wall_s:
        return None
    return flops / wall_s / (peak * devices)


def measured_train_flops(family: Family, model: nn.Module, x: torch.Tensor) -> int:
    """Forward + backward FLOPs of one step as torch's FlopCounterMode counts them (cross-check)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        logits(family, model, x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
