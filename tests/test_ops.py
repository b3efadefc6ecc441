"""The op table (`vitcost.analytic.ops`): every kind the walkers record has one entry, no entry is dead,
a kind the table lacks is refused, and the autocast widths it states are what torch's CPU autocast
writes (torch is the independent source; CUDA's fp32 list is not testable without a GPU)."""

from __future__ import annotations

import pytest

from vitcost import estimate
from vitcost.analytic.cost import Cost, Op
from vitcost.analytic.ops import OPS, autocast_width, kind_of
from vitcost.errors import VitcostError
from vitcost.zoo import PRESETS


def test_every_recorded_kind_has_one_entry_and_none_is_dead() -> None:
    seen = {op.kind for name, p in PRESETS.items() for op in estimate(name, p.size).ops}
    assert seen == set(OPS)
    assert all(entry.kind == kind for kind, entry in OPS.items())


def test_an_unknown_kind_is_refused_not_defaulted() -> None:
    op = Op("blocks.0.mystery", "mystery", "other", Cost(eltwise=4), 4, 4, None, None, (), frozenset())
    with pytest.raises(VitcostError, match="'mystery'.*op table"):
        kind_of(op)


torch = pytest.importorskip("torch")
F = torch.nn.functional
HALF, FULL = 2, 4


def _cpu_autocast_bytes(fn, x: torch.Tensor) -> int:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(x).element_size()


# One torch call per kind, as the reference nets run it, reading a bf16 tensor (the width before it).
CALLS = {
    "linear": lambda x: F.linear(x, torch.randn(8, 8)),
    "conv": lambda x: F.conv2d(x.reshape(4, 8, 1, 1), torch.randn(8, 8, 1, 1)),
    "layer_norm": lambda x: F.layer_norm(x, (8,), torch.ones(8), torch.zeros(8)),
    "gelu": F.gelu,
    "relu": F.relu,
    "batch_norm": lambda x: F.batch_norm(x, torch.zeros(8), torch.ones(8), torch.ones(8), torch.zeros(8)),
    "normalize": lambda x: F.normalize(x, dim=-1),
}


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_widths_are_cpu_autocasts(kind: str) -> None:
    """Each kind's stated width, on the CPU, is the element size torch's autocast writes for it."""
    x = torch.randn(4, 8).to(torch.bfloat16)
    want = _cpu_autocast_bytes(CALLS[kind], x)
    assert autocast_width(OPS[kind], HALF, HALF, HALF, "cpu", after_param=False) == want


def test_a_float32_parameter_promotes_and_a_residual_add_keeps_the_wider() -> None:
    x = torch.randn(4, 8).to(torch.bfloat16)
    param = torch.randn(8)  # float32: ViT's position embedding, a layer scale
    with torch.autocast("cpu", dtype=torch.bfloat16):
        added, scaled, fresh = x + param, x * param, x + torch.randn(4, 8)
    assert autocast_width(OPS["add"], HALF, HALF, HALF, "cpu", after_param=True) == added.element_size() == FULL
    assert autocast_width(OPS["scale"], HALF, HALF, HALF, "cpu", after_param=True) == scaled.element_size()
    assert autocast_width(OPS["add"], HALF, FULL, HALF, "cpu", after_param=False) == fresh.element_size() == FULL
