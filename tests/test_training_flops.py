"""Training-step FLOPs: forward + backward per layer. Expected numbers are derived by hand in each test
(shapes and the gradient products written out in comments) or counted by torch's FlopCounterMode over
`loss.backward()`; FlopCounterMode's own formulas are held against the hand derivations too, and its
one wrong formula met here (a grouped convolution's weight gradient) is shown, not tolerated silently."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from vitcost import estimate  # noqa: E402
from vitcost.analytic.cost import project  # noqa: E402
from vitcost.analytic.trace import Trace  # noqa: E402
from vitcost.analytic.training import project_backward, train_ops  # noqa: E402
from vitcost.cli import main  # noqa: E402
from vitcost.errors import VitcostError  # noqa: E402
from vitcost.measure.check import check_model  # noqa: E402
from vitcost.measure.counting import count  # noqa: E402
from vitcost.specs import (  # noqa: E402
    ConvNeXtSpec,
    MixerSpec,
    MViTSpec,
    NATSpec,
    PixelSpec,
    ResNetSpec,
    SwinSpec,
    SwinV2Spec,
    ViTSpec,
)
from vitcost.vocab import Kernel  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny ops run faster on one thread than split across a shared machine's cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stock_step(module: nn.Module, x: torch.Tensor) -> int:
    """Stock FlopCounterMode (no formulas added) over forward + loss.backward()."""
    with FlopCounterMode(display=False) as fcm:
        module(x).float().sum().backward()
    return fcm.get_total_flops()


def backward_macs(t: Trace, kernel: str = "math") -> dict[str, int]:
    return {op.path: op.backward.macs for op in train_ops(t.ops, Kernel(kernel))}


# ---------------------------------------------------------------------------------------------
# A linear layer


def test_linear_layers_by_hand() -> None:
    """x [3, 5, 8] (no grad) -> Linear(8, 16) -> Linear(16, 4); 15 rows.
    layer 0: Y = X W0^T: 15*8*16 = 1920 MACs; backward dW0 = dY^T X: 1920 (no dX: the input needs none).
    layer 1: 15*16*4 = 960 MACs; backward dX = dY W1: 960 and dW1 = dY^T X: 960."""
    torch.manual_seed(0)
    net, x = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 4)), torch.randn(3, 5, 8)
    c = count(net, x, mode="train", method="real")
    assert c.phase_counts("forward") == {"0": 2 * 1920, "1": 2 * 960}
    assert c.phase_counts("backward") == {"0": 2 * 1920, "1": 2 * (960 + 960)}
    assert c.phase_counts("backward", "macs") == {"0": 1920, "1": 1920}
    assert c.total("torch") == stock_step(net, x) == 2 * (1920 + 1920 + 960 + 1920)
    assert c.known_defects() == {} and c.unsupported == {}

    t = Trace(1)
    t.linear("0", 15, 8, 16, role="mlp")
    t.linear("1", 15, 16, 4, role="mlp")
    ops = train_ops(t.ops)
    assert backward_macs(t) == {"0": 1920, "1": 1920}
    # flops: 2 per MAC, plus the bias gradient, a sum of dY over the 15 rows: one op per output element
    assert [op.backward.eltwise for op in ops] == [15 * 16, 15 * 4]


# ---------------------------------------------------------------------------------------------
# Convolutions: depthwise and grouped, and FlopCounterMode's weight-gradient defect


def test_depthwise_conv_by_hand_and_flop_counter_modes_defect() -> None:
    """x [2, 3, 12, 12] (no grad) -> stem Conv2d(3, 8, 3, pad 1) -> depthwise Conv2d(8, 8, 5, stride 2,
    pad 2, groups 8): Ho = Wo = (12 + 4 - 5) // 2 + 1 = 6.
    stem:  2*12*12 * 8*3*9 = 62,208 MACs; backward dW only: 62,208.
    dw:    2*6*6 * 8*1*25 = 14,400 MACs; backward dX (transposed conv, each dY element times its 25 taps)
           14,400 and dW (each dY element times the 25 input taps it saw, one channel each) 14,400.
    FlopCounterMode's conv_backward_flop computes dW as conv(x^T, dY^T) with c_in taken from x's 8
    channels: k^2*Ho*Wo*C_in*C_out*N = 25*36*8*8*2 = 115,200 MACs, 8x (groups x) the real 14,400."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8))
    x = torch.randn(2, 3, 12, 12)
    stem, dw, flop_counter_dw_grad = 62_208, 14_400, 115_200
    assert stock_step(net, x) == 2 * (stem + stem + dw + dw + flop_counter_dw_grad)
    c = count(net, x, mode="train", method="real")
    assert c.total("torch") == 2 * (2 * stem + 2 * dw + flop_counter_dw_grad)
    assert c.known_defects() == {"1": {"convolution_backward": 2 * (flop_counter_dw_grad - dw)}}
    assert c.known_defects("macs") == {"1": {"convolution_backward": 7 * dw}}

    t = Trace(2)
    t.conv("0", 2, 3, 8, 12, 12, kernel=3, stride=1, pad=1, role="embed")
    t.conv("1", 2, 8, 8, 12, 12, kernel=5, stride=2, pad=2, groups=8, role="mlp")
    assert backward_macs(t) == {"0": stem, "1": 2 * dw}


def test_grouped_conv_by_hand() -> None:
    """x [1, 3, 10, 10] -> 1x1 stem Conv2d(3, 8) -> Conv2d(8, 16, 3, stride 2, pad 1, groups 4):
    Ho = Wo = (10 + 2 - 3) // 2 + 1 = 5; each output channel sees 8/4 = 2 input channels:
    forward 25 * 16*2*9 = 7,200 MACs, dX 7,200, dW 7,200. FlopCounterMode's dW: 9*25*8*16 = 28,800
    (groups x). The stem: 100 * 8*3 = 2,400 MACs, dW only."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4))
    x = torch.randn(1, 3, 10, 10)
    assert stock_step(net, x) == 2 * (2 * 2_400 + 2 * 7_200 + 28_800)
    c = count(net, x, mode="train", method="real")
    assert c.phase_counts("backward", "macs") == {"0": 2_400, "1": 7_200 + 28_800}
    assert c.known_defects("macs") == {"1": {"convolution_backward": 3 * 7_200}}

    t = Trace(1)
    t.conv("0", 1, 3, 8, 10, 10, kernel=1, stride=1, pad=0, role="embed")
    t.conv("1", 1, 8, 16, 10, 10, kernel=3, stride=2, pad=1, groups=4, role="mlp")
    assert backward_macs(t) == {"0": 2_400, "1": 2 * 7_200}


# ---------------------------------------------------------------------------------------------
# One attention layer, both paths


class OneAttention(nn.Module):
    """LayerNorm -> qkv -> attention (in this module's forward) -> proj, on [B, N, D]."""

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


B, N, D, H = 2, 6, 16, 2
HD, S = D // H, B * H * N * N  # head width 8; 144 score elements


@pytest.mark.parametrize("fused", [False, True])
def test_one_attention_layer_both_paths(fused: bool) -> None:
    """s = B*h*N*N = 144 scores of width d = 8. Forward: S = QK^T and O = PV, 2*s*d = 2,304 MACs.
    Math backward: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: 4*s*d = 4,608 MACs.
    Fused (the CPU flash kernel): S = QK^T recomputed first: 5*s*d = 5,760 MACs.
    qkv: 12 rows * 16 * 48 = 9,216 MACs, dX + dW (its input, the norm's output, needs a gradient);
    proj: 12 * 16 * 16 = 3,072, dX + dW."""
    torch.manual_seed(0)
    net, x = OneAttention(D, H, fused), torch.randn(B, N, D)
    attn_backward = (5 if fused else 4) * S * HD
    c = count(net, x, mode="train", method="real")
    assert c.phase_counts("forward", "macs") == {"qkv": 9_216, "": 2 * S * HD, "proj": 3_072}
    assert c.phase_counts("backward", "macs") == {"qkv": 2 * 9_216, "": attn_backward, "proj": 2 * 3_072}
    assert c.unsupported == {}
    stock = stock_step(net, x)
    if fused:  # stock FlopCounterMode has no formula for the CPU kernel, forward or backward
        assert c.total("torch") - stock == 2 * (2 * S * HD + attn_backward)
    else:
        assert c.total("torch") == stock

    t = Trace(B)
    t.attention("", B, H, N, N, HD)
    assert backward_macs(t, "sdpa" if fused else "math") == {"": attn_backward}


def test_attention_kernel_rules_by_hand() -> None:
    """Math path: 4*s*d; a fused kernel: 5*s*d; "sdpa" on the CPU: fused, but the math composite when an
    additive term needs a gradient (a learned bias); decomposed rel-pos adds 2x its products
    (q: [B'h*qh, qw, d] @ R_h^T: [d, kh], B'h*Nq*kh*d MACs per axis)."""
    s, d = 1 * 2 * 4 * 4, 8

    def one(kernel: str, **kw: object) -> int:
        t = Trace(1)
        t.attention("a", 1, 2, 4, 4, d, **kw)
        return backward_macs(t, kernel)["a"]

    assert one("math") == 4 * s * d
    assert one("sdpa") == one("flash") == one("efficient") == 5 * s * d
    assert one("sdpa", terms=1) == 4 * s * d  # the CPU dispatcher falls back to math for a learned mask
    assert one("efficient", terms=1) == 5 * s * d
    rel = 2 * 2 * (2 * 4 * 2 * d)  # two axes, 2x each, B'h*Nq*k*d = 2*4*2*8 on a 2 x 2 grid
    assert one("math", rel=(2, 2, 2, 2)) == 4 * s * d + rel


def test_backward_lands_on_the_module_that_ran_the_forward() -> None:
    """stem Conv2d(3, 8, 1) -> main Conv2d(8, 8, 3, pad 1) + short Conv2d(8, 8, 1) on [1, 3, 4, 4]:
    stem 16*8*3 = 384 MACs (dW only), main 16*8*8*9 = 9,216 (dX + dW), short 16*8*8 = 1,024 (dX + dW).
    FlopCounterMode's own module table enters `short` in the backward when its output's gradient is
    ready and leaves it when its input's is, which is after `main`'s backward: it counts main's
    backward under short too. Ours follows the autograd node to the module that created it."""
    torch.manual_seed(0)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.main, self.short = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            return self.main(x) + self.short(x)

    net, x = Residual(), torch.randn(1, 3, 4, 4)
    hand = {"stem": 2 * 384 * 2, "main": 2 * 9_216 * 3, "short": 2 * 1_024 * 3}
    assert count(net, x, mode="train").self_counts("torch") == hand
    with FlopCounterMode(display=False) as fcm:
        net(x).sum().backward()
    theirs = {k.removeprefix("Residual."): sum(v.values()) for k, v in fcm.get_flop_counts().items()}
    assert theirs["short"] == hand["short"] + 2 * 9_216 * 2  # main's backward counted under short as well
    assert theirs["Global"] == sum(hand.values())


# ---------------------------------------------------------------------------------------------
# Every family against FlopCounterMode, per layer, exactly

FAMILIES = {
    "vit": (ViTSpec(dim=32, depth=1, heads=2, num_classes=10), (32, 40)),
    "deit_distilled": (ViTSpec(dim=32, depth=1, heads=2, distilled=True, class_tokens=2, num_classes=10), (32, 40)),
    "sam": (ViTSpec(dim=32, depth=2, heads=2, class_tokens=0, window=3, global_blocks=(1,), rel_pos=True, neck=16,
                    num_classes=0), (64, 72)),
    "vitdet": (ViTSpec(dim=32, depth=2, heads=2, class_tokens=0, window=3, global_blocks=(1,), num_classes=10),
               (64, 72)),
    "linear_attention": (ViTSpec(dim=32, depth=1, heads=2, attention="linear", num_classes=10), (32, 40)),
    "pixel": (PixelSpec(dim=16, depth=1, heads=2, vocab=8), (6, 7)),
    "swin": (SwinSpec(embed_dim=16, depths=(2, 1), heads=(1, 2), window=3, num_classes=10), (32, 44)),
    "swinv2": (SwinV2Spec(embed_dim=16, depths=(2, 1), heads=(1, 2), window=3, cpb_hidden=16, num_classes=10),
               (32, 44)),
    "mvit": (MViTSpec(dims=(16, 32), depths=(1, 1), heads=(1, 2), num_classes=10), (32, 38)),
    "mixer": (MixerSpec(dim=32, depth=1, tokens_hidden=16, channels_hidden=64, num_classes=10), (32, 40)),
    "nat": (NATSpec(embed_dim=16, depths=(1, 1), heads=(1, 2), kernel=3, mlp_ratio=2.0, num_classes=10), (32, 44)),
    "convnext": (ConvNeXtSpec(dims=(8, 16), depths=(1, 1), num_classes=10), (32, 44)),
    "resnet": (ResNetSpec(depths=(1, 1), width=4, num_classes=10), (32, 44)),
    # non-local blocks after both bottlenecks (Wang et al. 2018): theta/phi/g convs, subsampled keys
    "resnet_nl": (ResNetSpec(depths=(1, 1), width=4, num_classes=10, nl_every=(1, 1), nl_subsample=True), (32, 44)),
}
GROUPED = {"mvit", "convnext"}  # depthwise convolutions: FlopCounterMode's weight-gradient defect


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_matches_flop_counter_mode_per_layer(family: str) -> None:
    """Two sizes (the second not dividing evenly), batch 1 and 2, both attention paths, a real step."""
    spec, sizes = FAMILIES[family]
    for res in sizes:
        for batch in (1, 2):
            for attn in ("math", "sdpa"):
                r = check_model(spec, res, batch=batch, attn=attn, convention="torch", method="real", mode="train")
                assert r.status == "PASS", (res, batch, attn, r.first_mismatch)
                assert r.fvcore is None and r.counts.backends == ("torch",) and r.counts.unsupported == {}
                assert r.backward[0] == r.backward[1] - r.known > r.forward[0] == r.forward[1] > 0
                assert (r.known > 0) == (family in GROUPED)
                assert all(layer.known == 0 or "conv_dw" in layer.path or ".pool_" in layer.path
                           for layer in r.layers)


def test_sdpa_path_runs_the_fused_backward_only_without_a_learned_mask() -> None:
    """ViT (no mask): the CPU flash kernel, one more score-sized product per layer in the backward:
    B*h*N*N*d MACs with N = 4 + 1 tokens at 32 px, patch 16. Swin (learned bias): the math composite,
    so both paths count the same."""
    vit, _ = FAMILIES["vit"]
    math = check_model(vit, 32, batch=2, attn="math", convention="macs", method="real", mode="train")
    fused = check_model(vit, 32, batch=2, attn="sdpa", convention="macs", method="real", mode="train")
    assert fused.kernel == "sdpa" and fused.torch - math.torch == 2 * 2 * 5 * 5 * 16
    swin, _ = FAMILIES["swin"]
    a, b = (check_model(swin, 32, batch=2, attn=p, convention="macs", method="real", mode="train") for p in ("math",
                                                                                                           "sdpa"))
    assert a.torch == b.torch and a.status == b.status == "PASS"


def test_convnext_defect_is_shown_layer_by_layer_by_hand() -> None:
    """ConvNeXt dims (8, 16) at 32 px, batch 2: stage 0 is an 8x8 grid of C = 8, stage 1 a 4x4 grid of
    C = 16; each conv_dw (7x7, groups C) has dW = N*g*g*C*49 MACs, and FlopCounterMode counts C times
    that: (C - 1) * dW too many."""
    spec, _ = FAMILIES["convnext"]
    r = check_model(spec, 32, batch=2, convention="macs", method="real", mode="train")
    known = {layer.path: layer.known for layer in r.layers if layer.known}
    assert known == {"stages.0.blocks.0.conv_dw": 7 * 2 * 64 * 8 * 49,
                     "stages.1.blocks.0.conv_dw": 15 * 2 * 16 * 16 * 49}
    for layer in r.layers:
        assert layer.torch - layer.analytic == layer.known
    assert [d["path"] for d in r.known_defects] == list(known)
    assert all("grouped convolution" in d["defect"] for d in r.known_defects)


def test_a_changed_layer_fails_even_beside_a_known_defect(monkeypatch) -> None:
    """The defect explains exactly its own excess: an analytic layer off by one MAC fails, named."""
    from vitcost.analytic import ops
    from vitcost.analytic.cost import Cost

    real = ops.OPS["conv"]

    def off_by_one(op, kernel, grad_input):
        fwd, back, rule = real.backward(op, kernel, grad_input)
        return fwd, (back + Cost(macs=1) if op.path.endswith("conv_dw") else back), rule

    monkeypatch.setitem(ops.OPS, "conv", real._replace(backward=off_by_one))
    spec, _ = FAMILIES["convnext"]
    r = check_model(spec, 32, batch=1, convention="macs", method="real", mode="train")
    assert r.status == "FAIL" and r.first_mismatch == "stages.0.blocks.0.conv_dw"


@pytest.mark.parametrize("model", ["vit_b16", "convnext_tiny", "mvitv2_t", "swinv2_t"])
def test_presets_on_meta(model: str) -> None:
    """The real presets at 224 on the meta device (no fused kernels there: the sdpa path is checked
    against the math backward)."""
    r = check_model(model, 224, batch=1, attn="sdpa", convention="torch", method="meta", mode="train")
    assert r.status == "PASS" and r.kernel == "math" and r.method == "meta"


def test_vit_b16_training_step_by_hand() -> None:
    """ViT-B/16 at 224, batch 1: N = 197 tokens of D = 768, 12 heads of 64, MLP 3072, 12 blocks.
    Forward MACs: patch embedding 196 * 768 * (3*16*16) + per block qkv N*D*3D + QK^T and AV 2*12*N*N*64
    + proj N*D*D + MLP 2*N*D*4D, + head 768*1000. Backward: every product doubles (dX and dW; dQ, dK
    and dV, dP), except the patch embedding's conv, whose input is the image: dW only. Math path: 4
    score-sized products per block; the fused kernel recomputes QK^T: 12*197*197*64 MACs more each."""
    n, d = 197, 768
    embed = 196 * d * 3 * 16 * 16
    block = n * d * 3 * d + 2 * 12 * n * n * 64 + n * d * d + 2 * n * d * 4 * d
    forward = embed + 12 * block + d * 1000
    step = estimate("vit_b16", 224).train_cost()
    assert step.count("macs", "forward") == forward
    assert step.count("macs", "backward") == 2 * forward - embed
    assert step.count("torch") == 2 * (3 * forward - embed)
    fused = estimate("vit_b16", 224).train_cost(Kernel.flash)
    assert fused.count("macs", "backward") - step.count("macs", "backward") == 12 * 12 * n * n * 64


def test_flops_convention_of_norm_and_gelu_by_hand() -> None:
    """flops: LayerNorm 5 forward + 13 backward per element (recompute x^ 2, shift and scale gradients 3,
    g = dy gamma 1, the two row sums 3, dx 4); GELU 8 + 18 (recompute tanh 6, the derivative's terms 10,
    times dy 1, and their sum 1)."""
    t = Trace(1)
    t.norm("n", 10, 4)
    t.gelu("g", 40)
    ops = {op.path: op for op in train_ops(t.ops)}
    assert project(ops["n"].forward, "flops") + project_backward(ops["n"].backward, "flops") == 40 * (5 + 13)
    assert project(ops["g"].forward, "flops") + project_backward(ops["g"].backward, "flops") == 40 * (8 + 18)
    with pytest.raises(VitcostError, match="fvcore counts no backward"):
        estimate("vit_ti16", 32).train_cost().count("fvcore")


# ---------------------------------------------------------------------------------------------
# The CLI


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_train_json_and_by_layer_name_the_defect(capsys) -> None:
    code, out, _ = run(capsys, "check", "-m", "convnext_tiny:dims=8-16,depths=1-1", "-r", "32", "--attn", "math",
                       "--mode", "train", "--format", "json", "--by-layer")
    row = json.loads(out)[0]
    assert code == 0 and row["status"] == "PASS" and row["mode"] == "train" and row["convention"] == "torch"
    assert row["fvcore"] is None and row["torch"] - row["analytic"] == row["known_defect"] > 0
    assert row["analytic"] == row["analytic_forward"] + row["analytic_backward"]
    assert {d["path"] for d in row["known_defects"]} == {"stages.0.blocks.0.conv_dw", "stages.1.blocks.0.conv_dw"}
    code, out, _ = run(capsys, "check", "-m", "convnext_tiny:dims=8-16,depths=1-1", "-r", "32", "--attn", "math",
                       "--mode", "train", "--by-layer")
    assert code == 0 and "known FlopCounterMode defect (convolution_backward)" in out
    assert "training step" in out and "conv_backward_flop" in out


def test_cli_train_with_fvcore_is_one_line_exit_2(capsys) -> None:
    code, out, err = run(capsys, "check", "-m", "vit_ti16", "-r", "32", "--mode", "train", "-c", "fvcore")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "fvcore counts no backward" in err
