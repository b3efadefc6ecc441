"""`vitcost savings`: the course's optimisation table computed for one design, from the same models as
`compare --mode train` (memory) and `analytic.training` (FLOPs)."""

from __future__ import annotations

import json

import pytest

from vitcost import estimate
from vitcost.analytic.cost import project
from vitcost.analytic.hardware import get_hardware
from vitcost.analytic.savings import savings
from vitcost.analytic.train_memory import train_memory
from vitcost.analytic.training import train_cost
from vitcost.cli import main
from vitcost.design import parse_design
from vitcost.vocab import Dtype, Kernel, Optimizer


def run(capsys, *argv):
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err



def table(model: str, res: int, batch: int) -> tuple[list, list[str]]:
    """The savings table of a preset at res x res on the default H100 SXM profile, fp32, math, AdamW."""
    return savings(parse_design(model), (res, res), batch, Dtype.fp32, Kernel.math, Optimizer.adamw,
                   get_hardware("h100-sxm"))

def test_rows_are_the_training_models_for_each_variant():
    rows, skipped = table("vit_ti16", 224, 4)
    assert [r.technique for r in rows] == ["baseline", "mixed precision (bf16 autocast)", "checkpointing, every block",
                                           "checkpointing, every 2 blocks", "flash attention (fused kernel)",
                                           "linear attention", "token pruning (EViT)",
                                           "top-k sparse attention"] and skipped == []
    variants = {"baseline": (estimate("vit_ti16", 224, 4), 0),
                "mixed precision (bf16 autocast)": (estimate("vit_ti16", 224, 4, "bf16"), 0),
                "checkpointing, every block": (estimate("vit_ti16", 224, 4), 1),
                "checkpointing, every 2 blocks": (estimate("vit_ti16", 224, 4), 2),
                "flash attention (fused kernel)": (estimate("vit_ti16", 224, 4, attn="flash"), 0),
                "linear attention": (estimate("vit_ti16:attention=linear", 224, 4), 0),
                # EViT's DeiT-S setting on ViT-Ti's 12 blocks; top-k: a quarter of the 197 keys, rounded up
                "token pruning (EViT)": (estimate("vit_ti16:prune_blocks=4-7-10,keep_rate=0.7", 224, 4), 0),
                "top-k sparse attention": (estimate("vit_ti16:topk=50", 224, 4), 0)}
    base = train_memory(variants["baseline"][0], "adamw", 0).step_peak
    for r in rows:
        est, ck = variants[r.technique]
        m = train_memory(est, Optimizer.adamw, ck)
        assert r.memory_bytes == m.step_peak, r.technique
        assert r.flops == train_cost(est).count("flops") + project(m.recompute, "flops"), r.technique
        assert r.memory_saved == pytest.approx(1 - m.step_peak / base)


def test_checkpointing_trades_memory_for_a_recomputed_forward():
    rows = {r.technique: r for r in table("vit_s16", 448, 8)[0]}
    base, ck = rows["baseline"], rows["checkpointing, every block"]
    assert ck.memory_bytes < base.memory_bytes and ck.speedup < 1
    # the recomputed forward is (nearly) one more forward: step = forward + backward ~ 3 forwards
    fwd = train_cost(estimate("vit_s16", 448, 8)).count("flops", "forward")
    assert ck.flops - base.flops == pytest.approx(fwd, rel=0.02)


def test_designs_without_the_option_say_why(capsys):
    code, out, err = run(capsys, "savings", "resnet50", "-r", "224", "-b", "8", "--dtype", "bf16")
    assert code == 0
    assert "left out: mixed precision: the baseline already runs in bf16" in out
    assert "left out: flash attention: the design materialises no attention scores" in out
    assert "left out: linear attention: the resnet family has no attention option" in out


def test_json_and_the_course_guesses(capsys):
    code, out, _ = run(capsys, "savings", "vit_ti16", "-r", "224", "-b", "2", "-f", "json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["technique"] == "baseline" and rows[0]["speedup"] == 1.0
    course = {r["technique"]: (r["course_memory_saved"], r["course_speedup"]) for r in rows}
    assert course["mixed precision (bf16 autocast)"] == ("~50%", "1.5-2x")
    assert course["checkpointing, every block"] == ("~75%", "0.8x")
    assert course["linear attention"][0] == "~60%"


@pytest.mark.parametrize("argv", [["savings", "vit_b16", "--optimizer", "lion"], ["savings", "vit_b99"],
                                  ["savings", "vit_b16", "-r", "8"], ["savings", "vit_b16", "--hardware", "tpu"]])
def test_bad_input_is_one_line(argv, capsys):
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("vitcost: error: ") and err.count("\n") == 1


def test_training_memory_wall_in_compare_fits_and_the_next_size_does_not(capsys):
    """`compare --mode train --device-memory`: the largest input and batch it reports fit in the budget by
    the exact step model, and one lattice step (or one more image) more does not."""
    budget = 2 * 10**9
    code, out, err = run(capsys, "compare", "--mode", "train", "-m", "vit_ti16", "-r", "224", "-b", "4",
                         "--device-memory", "2GB", "-f", "json")
    assert code == 0, err
    wall = json.loads(out)[0]["train_memory_wall"]
    r, b = wall["largest_res"], wall["largest_batch"]["224"] if "224" in wall["largest_batch"] else \
        wall["largest_batch"][224]

    def peak(res, batch):
        return train_memory(estimate("vit_ti16", res, batch), Optimizer.adamw, 0).step_peak

    assert peak(r, 4) <= budget < peak(r + 16, 4)  # patch 16: the next size the model takes
    assert peak(224, b) <= budget < peak(224, b + 1)
