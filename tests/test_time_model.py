"""The per-op time model (vitcost.analytic.time_model): single ops on a made-up device, with every
figure derived by hand below from the module's stated rules (not from the tool's output), and
properties that hold whatever the device's figures are."""

from __future__ import annotations

import pytest

from vitcost import Estimate, estimate
from vitcost.analytic.time_model import (
    Efficiency,
    Kernel,
    TimeDevice,
    efficiency_from_table,
    efficiency_table,
    forward_time,
    kernel_time,
    kernels,
    op_times,
)
from vitcost.analytic.trace import Trace
from vitcost.design import parse_design
from vitcost.errors import VitcostError
from vitcost.vocab import Dtype
from vitcost.vocab import Kernel as AttnKernel

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

TF, TB = 1e12, 1e12
LAUNCH = 5e-6
# A made-up device: 100 TFLOP/s in 16 bits, 25 in fp32 (and as its vector peak), 1 TB/s, a 5 us floor.
DEVICE = TimeDevice(
    "made-up", {"fp16": 100 * TF, "bf16": 100 * TF, "fp32": 25 * TF}, 25 * TF, 1 * TB, LAUNCH,
    {"gemm": Efficiency(0.5, 1e9), "conv": Efficiency(0.4), "flash": Efficiency(0.25, 2e9),
     "efficient": Efficiency(0.2), "depthwise": Efficiency(0.5), "memory": Efficiency(0.8)})


def _est(trace: Trace, dtype: Dtype = Dtype.fp16, attn: AttnKernel = AttnKernel.sdpa) -> Estimate:
    return Estimate(parse_design("vit_ti16"), (224, 224), trace.batch, dtype, attn, tuple(trace.ops))


def test_gemm_under_autocast_by_hand():
    t = Trace(1)
    t.linear("fc", 4096, 1024, 2048, role="mlp")
    ks = kernels(_est(t))
    params = 1024 * 2048 + 2048
    # the weight's cast (read 4, write 2 bytes per parameter), the fp32 input's cast, then the GEMM
    assert [k.cls for k in ks] == ["memory", "memory", "gemm"]
    assert ks[0].bytes == params * 6
    assert ks[1].bytes == 4096 * 1024 * 6
    flops = 2 * 4096 * 1024 * 2048
    nbytes = (4096 * 1024 + 4096 * 2048 + params) * 2
    assert ks[2].flops == flops and ks[2].bytes == nbytes
    # compute (17.18 GFLOP + 1 GFLOP half work) / (100 TFLOP/s * 0.5) = 363.6 us; memory 21.0 MB / 0.8 TB/s
    expected = max((flops + 1e9) / (100 * TF * 0.5), nbytes / (1 * TB * 0.8), LAUNCH)
    assert kernel_time(ks[2], DEVICE) == pytest.approx(expected)
    assert kernel_time(ks[2], DEVICE) == pytest.approx(363.6e-6, rel=1e-3)


def test_linear_over_a_transposed_view_by_hand():
    """Mixer's token MLP: torch's linear over a non-contiguous input runs matmul (a contiguous copy of the
    input, a GEMM without the bias) and then adds the bias in place over the output."""
    t = Trace(1)
    t.linear("fc", 512, 49, 256, role="mlp")
    t.note("transposed_input")
    ks = kernels(_est(t))
    params = 49 * 256 + 256
    assert [k.cls for k in ks] == ["memory", "memory", "memory", "gemm", "memory"]
    assert ks[2].bytes == 512 * 49 * 2 * 2  # the cast input, read and written in 16 bits
    assert ks[3].other_flops == 0  # the bias is not the GEMM's
    assert ks[4].bytes == 512 * 256 * 2 * 2 and ks[4].other_flops == 512 * 256
    assert ks[3].bytes == (512 * 49 + 512 * 256 + params) * 2


def test_torch_adds_a_transposed_inputs_bias_after_the_gemm():
    """The rule above, as the installed torch runs it (the profiler's aten ops of one such linear)."""
    torch = pytest.importorskip("torch")
    from torch.profiler import profile

    lin = torch.nn.Linear(49, 256)
    x = torch.randn(2, 49, 512)
    with profile() as prof:
        lin(x.transpose(1, 2))
    names = [e.name for e in prof.events() if e.name in ("aten::clone", "aten::mm", "aten::addmm", "aten::add_")]
    assert names == ["aten::clone", "aten::mm", "aten::add_"]
    with profile() as prof:  # a contiguous input: one GEMM with the bias inside
        lin(x.transpose(1, 2).contiguous())
    names = [e.name for e in prof.events() if e.name in ("aten::mm", "aten::addmm", "aten::add_")]
    assert names == ["aten::addmm"]


def test_layernorm_under_autocast_writes_fp32():
    t = Trace(1)
    t.linear("fc", 100_000, 256, 256, role="mlp")  # writes 16 bits
    t.norm("norm", 100_000, 256)
    ks = [k for k in kernels(_est(t)) if k.path == "norm"]
    elems = 100_000 * 256
    # autocast casts the 16-bit input up (read 2, write 4), then the norm reads 4 and writes 4 bytes per
    # element and reads its 2 * 256 fp32 parameters
    assert [k.bytes for k in ks] == [elems * 6, elems * 8 + 512 * 4]
    assert kernel_time(ks[1], DEVICE) == pytest.approx((elems * 8 + 2048) / (0.8 * TB))  # 256 us, above the floor
    # without autocast (an fp32 run) there is no cast and every tensor is 4 bytes
    ks32 = [k for k in kernels(_est(t, Dtype.fp32), amp=False) if k.path == "norm"]
    assert [k.bytes for k in ks32] == [elems * 8 + 512 * 4]


def test_fused_attention_flash_and_efficient():
    b, h, n, d = 2, 4, 256, 64
    t = Trace(b)
    t.linear("qkv", b * n, h * d, 3 * h * d, role="proj")
    t.attention("attn", b, h, n, n, d)
    (flash,) = [k for k in kernels(_est(t)) if k.path == "attn"]
    scores, q = b * h * n * n, b * h * n * d
    # q k^T and scores @ v: 2 * (2 * s * d) FLOPs; q, k, v read and the output written, 2 bytes each
    assert flash.cls == "flash"
    assert flash.flops == 4 * scores * d
    assert flash.bytes == 4 * q * 2
    assert kernel_time(flash, DEVICE) == pytest.approx(max((4 * scores * d + 2e9) / (100 * TF * 0.25),
                                                           4 * q * 2 / (0.8 * TB), LAUNCH))
    # an additive bias: the memory-efficient kernel, which also reads the fp32 score-sized bias
    t2 = Trace(b)
    t2.linear("qkv", b * n, h * d, 3 * h * d, role="proj")
    t2.attention("attn", b, h, n, n, d, terms=1)
    (eff,) = [k for k in kernels(_est(t2)) if k.path == "attn"]
    assert eff.cls == "efficient" and eff.bytes == 4 * q * 2 + scores * 4


def test_math_attention_score_traffic_under_autocast():
    """Swin's math path: q k^T writes 16-bit scores, + an fp32 bias gives fp32, softmax reads and writes
    fp32, and the probabilities are cast back to 16 bits for scores @ v."""
    b, h, n, d = 8, 3, 49, 32
    t = Trace(b)
    t.linear("qkv", b * n, h * d, 3 * h * d, role="proj")
    t.attention("attn", b, h, n, n, d, terms=1)
    s = b * h * n * n
    ks = [k for k in kernels(_est(t, attn=AttnKernel.math)) if k.path == "attn"]
    score_sized = [k.bytes for k in ks if k.cls == "memory" and k.bytes % s == 0 and k.bytes >= s * 6]
    # term: read 2 + bias 4, write 4; softmax: read 4, write 4; cast: read 4, write 2
    assert score_sized == [s * 10, s * 8, s * 6]


def test_launch_floor_and_monotone_in_size():
    tiny = Kernel("x", "memory", 0, 0, 64, "fp16")
    assert kernel_time(tiny, DEVICE) == LAUNCH
    e224 = estimate("vit_ti16", res=224, batch=8, dtype="fp16", attn="sdpa")
    times = op_times(e224, DEVICE)
    assert all(s >= LAUNCH for _, _, s in times)
    assert forward_time(e224, DEVICE) >= len(times) * LAUNCH
    # more pixels, a larger batch, a wider model: never faster
    t = [forward_time(estimate("vit_ti16", res=r, batch=8, dtype="fp16", attn="sdpa"), DEVICE) for r in (224, 320, 448)]
    assert t[0] < t[1] < t[2]
    assert forward_time(estimate("vit_ti16", res=224, batch=16, dtype="fp16", attn="sdpa"), DEVICE) > t[0]
    assert forward_time(estimate("vit_s16", res=224, batch=8, dtype="fp16", attn="sdpa"), DEVICE) > t[0]
    # a slower device is slower
    slow = TimeDevice("slow", DEVICE.matmul_flops, DEVICE.vector_flops, DEVICE.bandwidth / 2, LAUNCH, DEVICE.efficiency)
    assert forward_time(e224, slow) > forward_time(e224, DEVICE)


def test_efficiency_tables_round_trip_through_toml():
    text = "\n".join(f"[efficiency.{c}]\nfraction = {v['fraction']}\nhalf_work = {v['half_work']}"
                     for c, v in efficiency_table(DEVICE).items())
    assert efficiency_from_table(tomllib.loads(text)["efficiency"]) == dict(DEVICE.efficiency)


@pytest.mark.parametrize("table", [{"tensor": {"fraction": 0.5}}, {"gemm": {"fraction": 0.5, "speed": 1}},
                                   {"gemm": {"half_work": 1e9}}, {"gemm": {"fraction": 0.0}},
                                   {"gemm": {"fraction": 0.5, "half_work": -1}}, {"gemm": {"fraction": float("nan")}},
                                   {"gemm": {"fraction": "fast"}}, {"gemm": {"fraction": True}}, {"gemm": 0.5},
                                   {"gemm": {"fraction": 0.5, "half_work": float("inf")}}, {"gemm": {"fraction": 9.0}}])
def test_bad_efficiency_tables(table):
    with pytest.raises(VitcostError):
        efficiency_from_table(table)


def test_bad_runtime_and_missing_class():
    e = estimate("vit_ti16", res=224, batch=1, dtype="fp16", attn="math")
    with pytest.raises(VitcostError, match="math_scores"):
        kernels(e, math_scores="bf8")
    bare = TimeDevice("bare", DEVICE.matmul_flops, DEVICE.vector_flops, DEVICE.bandwidth, LAUNCH,
                      {"memory": Efficiency(0.8)})
    with pytest.raises(VitcostError, match=r"bare has no \[efficiency\.conv\]"):
        forward_time(e, bare)


def _profile(tmp_path, efficiency: str) -> str:
    path = tmp_path / "card.toml"
    path.write_text(f"""name = "Card"
[memory]
gib = 24
source = "made up for the test"
[bandwidth]
tb_per_s = 1.0
source = "made up"
[vector]
tflops = 50
source = "made up"
[matmul.fp32]
tflops = 50
source = "made up"
[matmul.fp16]
tflops = 100
source = "made up"
[matmul.bf16]
tflops = 100
source = "made up"
[launch_overhead]
us = 2
source = "made up"
{efficiency}
""")
    return str(path)


def test_a_profile_carries_the_time_models_figures(tmp_path):
    """A profile's [efficiency] tables are the time model's device: its peaks, bandwidth and launch
    overhead, and each class's fraction and half_work as written."""
    from vitcost.analytic.hardware import get_hardware, profile_toml
    from vitcost.analytic.time_model import time_device

    hw = get_hardware(_profile(tmp_path, """[efficiency]
source = "fitted on nothing: a test"
gemm = { fraction = 0.9, half_work = 1e9 }
memory = { fraction = 0.8 }"""))
    dev = time_device(hw)
    assert dev.efficiency == {"gemm": Efficiency(0.9, 1e9), "memory": Efficiency(0.8, 0.0)}
    assert dev.launch_s == pytest.approx(2e-6) and dev.peak("fp16") == 100e12 and dev.bandwidth == 1e12
    assert dev.source == "fitted on nothing: a test"
    assert "gemm = { fraction = 0.9, half_work = 1e+09 }" in profile_toml(hw)  # written back as read


@pytest.mark.parametrize("efficiency,message", [
    ("[efficiency]\ngemm = { fraction = 0.9 }", "needs a `source`"),
    ("[efficiency]\nsource = \"x\"\ngemm = { fraction = nan }", "finite number"),
    ("[efficiency]\nsource = \"x\"\nwarp = { fraction = 0.5 }", "unknown efficiency class"),
])
def test_bad_efficiency_in_a_profile(tmp_path, efficiency, message):
    from vitcost.analytic.hardware import get_hardware

    with pytest.raises(VitcostError, match=message):
        get_hardware(_profile(tmp_path, efficiency))


def test_a_profile_without_figures_says_how_to_get_them():
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.time_model import time_device

    with pytest.raises(VitcostError, match="no \\[efficiency\\] figures"):
        time_device(get_hardware("cpu"))
