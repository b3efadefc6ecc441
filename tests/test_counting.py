"""The counting engine: fvcore and FlopCounterMode self counts per dotted path, fused attention counted,
meta-device counting. Expected numbers are derived by hand in each test, or taken from published.md,
or from the counters' own unmodified output."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from vitcost.errors import VitcostError  # noqa: E402
from vitcost.measure.counting import count  # noqa: E402
from vitcost.measure.counting_formulas import attention_macs  # noqa: E402
from vitcost.measure.counting_meta import forward_peak_bytes, to_meta  # noqa: E402


class TinyAttention(nn.Module):
    """norm -> qkv -> attention (explicit or fused, in this module's own forward) -> proj."""

    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = ((q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(b, n, d))


B, N, D, H = 2, 10, 64, 4
HD = D // H


def hand_macs() -> dict[str, int]:
    """MACs per path of TinyAttention on [B, N, D], derived from the shapes."""
    return {
        "qkv": B * N * D * 3 * D,  # [B*N, D] @ [D, 3D]
        "": B * H * N * N * HD + B * H * N * N * HD,  # q k^T: [B,H,N,d]@[B,H,d,N]; scores @ v: [B,H,N,N]@[B,H,N,d]
        "proj": B * N * D * D,  # [B*N, D] @ [D, D]
    }


def hand_fvcore() -> dict[str, int]:
    """fvcore: 1 per MAC, plus 5 per element of the affine LayerNorm."""
    return {"norm": 5 * B * N * D, **hand_macs()}


@pytest.mark.parametrize("method", ["real", "meta"])
@pytest.mark.parametrize("fused", [False, True])
def test_small_attention_counts_by_hand(method: str, fused: bool) -> None:
    c = count(TinyAttention(D, H, fused), (B, N, D), method=method)
    assert c.method == method
    assert c.self_counts("fvcore") == {p: hand_fvcore()[p] for p in ("", "norm", "qkv", "proj")}
    assert c.self_counts("torch") == {p: 2 * n for p, n in hand_macs().items()}
    for backend in ("fvcore", "torch"):
        assert c.total(backend, "macs") == sum(hand_macs().values())
        assert c.total(backend, "torch") == 2 * sum(hand_macs().values())
        # the torch pass observes the LayerNorm itself, so it gives fvcore's convention independently
        assert c.total(backend, "fvcore") == sum(hand_fvcore().values())
    assert c.by_module("fvcore")[""] == sum(hand_fvcore().values())
    assert c.by_operator("fvcore")["layer_norm"] == 5 * B * N * D


def test_sdpa_handle_restores_exactly_the_explicit_attention() -> None:
    from fvcore.nn import FlopCountAnalysis

    x = torch.randn(B, N, D)
    explicit, fused = count(TinyAttention(D, H, False), x), count(TinyAttention(D, H, True), x)
    for backend in ("fvcore", "torch"):
        assert fused.self_counts(backend) == explicit.self_counts(backend)
    assert "aten::scaled_dot_product_attention" not in fused.unsupported
    # Stock fvcore drops exactly the two attention matmuls and reports the op as unsupported.
    stock = FlopCountAnalysis(TinyAttention(D, H, True), x).unsupported_ops_warnings(False)
    assert stock.total() == fused.total("fvcore") - hand_macs()[""]
    assert stock.unsupported_ops()["aten::scaled_dot_product_attention"] == 1


def test_torch_counts_agree_with_flop_counter_mode_itself() -> None:
    """Totals and per-module inclusive counts equal FlopCounterMode's own table, once its names
    (`TinyAttention.qkv`) are turned into dotted paths (`qkv`)."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x = TinyAttention(D, H, False), torch.randn(B, N, D)
    with FlopCounterMode(display=False) as fcm:
        model(x)
    own = {name: sum(ops.values()) for name, ops in fcm.get_flop_counts().items() if name != "Global"}
    converted = {("" if name == "TinyAttention" else name.removeprefix("TinyAttention.")): n for name, n in own.items()}
    c = count(model, x)
    assert c.total("torch") == fcm.get_total_flops()
    assert {p: n for p, n in c.by_module("torch").items() if n} == converted


def test_stock_flop_counter_mode_misses_cpu_sdpa_and_ours_does_not() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model, x = TinyAttention(D, H, True), torch.randn(B, N, D)
    with FlopCounterMode(display=False) as fcm:
        model(x)
    c = count(model, x, method="real")
    assert c.total("torch") - fcm.get_total_flops() == 2 * hand_macs()[""]


def test_attention_macs_by_hand() -> None:
    # [b=2, h=8, Nq=5, d=16] against 7 keys, value width 32: 2*8*5*7*16 + 2*8*5*7*32
    assert attention_macs((2, 8, 5, 16), (2, 8, 7, 16), (2, 8, 7, 32)) == 8960 + 17920
    # grouped-query: 2 key/value heads shared by 8 query heads still counts all 8
    assert attention_macs((1, 8, 4, 16), (1, 2, 4, 16), (1, 2, 4, 16)) == 2 * 8 * 4 * 4 * 16
    # 3-d inputs [batch, N, d]
    assert attention_macs((3, 4, 8), (3, 6, 8), (3, 6, 8)) == 2 * 3 * 4 * 6 * 8


class Shared(nn.Module):
    """One Linear owned by `a` and also called from `b`: counted once per call, at its own path."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 8))
        self.b = nn.Sequential(self.a[0], nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_reused_module_is_counted_at_its_first_name() -> None:
    c = count(Shared(), (3, 8))
    # a.0 runs twice: 2 x 3*8*8 MACs; b.1 once: 3*8*4
    assert c.self_counts("fvcore") == {"a.0": 2 * 3 * 8 * 8, "b.1": 3 * 8 * 4}
    assert c.self_counts("torch", "macs") == c.self_counts("fvcore")
    assert c.total("torch") == 2 * (2 * 3 * 8 * 8 + 3 * 8 * 4)


def test_conv_model_on_meta_uses_fvcore_rules_at_the_dispatcher() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    real, meta = count(model, (2, 3, 32, 32), method="real"), count(model, (2, 3, 32, 32), method="meta")
    conv = 2 * 8 * 16 * 16 * 3 * 3 * 3  # [2, 8, 16, 16] outputs x 3*3*3 taps
    linear = 2 * 8 * 16 * 16 * 10
    assert real.fvcore_via == "jit" and meta.fvcore_via == "dispatch"
    for c in (real, meta):
        assert c.self_counts("fvcore") == {"0": conv, "2": linear}
        assert c.self_counts("torch") == {"0": 2 * conv, "2": 2 * linear}
    # a conv-free model traces on meta with fvcore itself
    assert count(TinyAttention(D, H, True), (B, N, D), method="meta").fvcore_via == "jit"
    assert next(model.parameters()).device.type == "cpu"  # the original is untouched


def test_auto_picks_meta_over_the_budget_and_says_so() -> None:
    model = TinyAttention(D, H, False)
    assert count(model, (B, N, D), budget_bytes=1).method == "meta"
    big = count(model, (B, N, D), budget_bytes=10**12)
    assert big.method == "real" and 0 < big.predicted_bytes < 10**12 and big.budget_bytes == 10**12
    assert count(to_meta(model), (B, N, D)).method == "meta"


def test_forward_peak_bytes_by_hand() -> None:
    lin = nn.Linear(1000, 500)
    x = torch.empty(100, 1000, device="meta")
    params = (1000 * 500 + 500) * 4
    # input 100x1000 and output 100x500 fp32 (the transposed weight is a view: no bytes)
    assert forward_peak_bytes(to_meta(lin), (x,)) == params + 100 * 1000 * 4 + 100 * 500 * 4


def test_bad_input_is_one_sentence() -> None:
    model = TinyAttention(D, H, False)
    with pytest.raises(VitcostError, match="counting method"):
        count(model, (B, N, D), method="fast")
    with pytest.raises(VitcostError, match="backends"):
        count(model, (B, N, D), backends=("ptflops",))
    with pytest.raises(VitcostError, match="shape"):
        count(model, (B, 0, D))
    with pytest.raises(VitcostError, match="forward failed on input 2x10x63"):
        count(model, (B, N, D - 1), method="real")
    with pytest.raises(VitcostError, match="meta device"):
        count(to_meta(model), (B, N, D), method="real")
    with pytest.raises(VitcostError, match="torch.nn.Module"):
        count(lambda x: x, (1,))
    with pytest.raises(VitcostError, match="flops"):
        count(model, (B, N, D)).total("fvcore", "flops")


def hand_pixel_layers(n: int, d: int, heads: int, hidden: int, vocab: int, depth: int) -> dict[str, int]:
    """fvcore convention per path of the pixel model on one R x R image (N = R^2 tokens of width d)."""
    layers = {"patch_embed.proj": n * d * 3}  # 1x1 conv: each pixel's 3 colours -> d
    for i in range(depth):
        p = f"blocks.{i}"
        layers |= {
            f"{p}.norm1": 5 * n * d,
            f"{p}.attn.qkv": 3 * n * d * d,
            f"{p}.attn": 2 * n * n * d,  # q k^T + scores @ v, all heads: 2 * heads * N^2 * (d/heads)
            f"{p}.attn.proj": n * d * d,
            f"{p}.norm2": 5 * n * d,
            f"{p}.mlp.fc1": n * d * hidden,
            f"{p}.mlp.fc2": n * hidden * d,
        }
    return layers | {"norm": 5 * n * d, "head": n * d * vocab}


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_meta_pixel_attention_over_a_million_tokens(attn: str) -> None:
    from vitcost.nets import build
    from vitcost.specs import PixelSpec

    spec = PixelSpec(dim=512, depth=2, heads=8)  # igpt_s's width and heads, two blocks
    r = 1024
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    c = count(build(spec, r, attn=attn, device="meta"), (1, 3, r, r))
    elapsed = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert c.method == "meta"
    expected = hand_pixel_layers(r * r, 512, 8, 2048, 512, 2)
    assert c.self_counts("fvcore") == expected
    assert c.self_counts("torch", "fvcore") == expected
    assert c.total("torch") == 2 * (sum(expected.values()) - 5 * r * r * 512 * 5)  # 5 norms, no MACs
    # One layer's scores alone would be 8 * 2^40 fp32 elements = 32 TiB; counting allocates none of it.
    assert elapsed < 30
    assert grown < 512 * 2**20


@pytest.mark.slow
def test_fused_attention_vit_b16_published_and_stock_fvcore_gap(published) -> None:
    """DeiT-B with fused attention: 17.58 GMACs (published), which stock fvcore reports as 16.87G: it
    drops QK^T and AV, 12 layers x 2 x 12 heads x 197^2 x 64 MACs."""
    from fvcore.nn import FlopCountAnalysis

    from vitcost.nets import build

    gmacs = {(m, r): g for m, r, _, g in published}[("vit_b16", 224)]
    model = build("vit_b16", 224, attn="sdpa").eval()
    c = count(model, (1, 3, 224, 224), method="real")
    assert round(c.total("fvcore") / 1e9, 2) == gmacs
    stock = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224)).unsupported_ops_warnings(False)
    scores = 12 * 2 * 12 * 197**2 * 64
    assert stock.total() == c.total("fvcore") - scores
    assert round(stock.total() / 1e9, 2) == 16.87


def test_fused_attention_deit_s_published(published) -> None:
    """DeiT-S with fused attention: 4.61 GMACs published; stock fvcore drops 12 x 2 x 6 x 197^2 x 64."""
    from fvcore.nn import FlopCountAnalysis

    from vitcost.nets import build

    gmacs = {(m, r): g for m, r, _, g in published}[("vit_s16", 224)]
    model = build("vit_s16", 224, attn="sdpa").eval()
    c = count(model, (1, 3, 224, 224), method="real", backends=("fvcore",))
    assert round(c.total("fvcore") / 1e9, 2) == gmacs
    stock = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224)).unsupported_ops_warnings(False)
    assert stock.total() == c.total("fvcore") - 12 * 2 * 6 * 197**2 * 64
    assert round(stock.total() / 1e9, 2) == 4.25


def test_import_vitcost_stays_free_of_torch() -> None:
    code = ("import sys, vitcost, vitcost.measure, vitcost.measure.counting, vitcost.measure.check; "
            "print(sorted(m for m in ('torch', 'fvcore', 'pandas', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
