"""`vitcost sweep` and `vitcost.sweep`: every row is compare's row for its label, the front is exactly the
non-dominated set, limits and invalid designs are counted, samples are reproducible, bad input is one
line and exit 2 before any design is costed."""

from __future__ import annotations

import itertools
import json
import random

import pytest

import vitcost
from vitcost.cli import main
from vitcost.errors import VitcostError
from vitcost.report import sweep as engine


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def sweep_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, "sweep", *argv, "-f", "json")
    assert code == 0, err
    return json.loads(out)


def compare_row(capsys, row: dict, train: bool = False, **opts: str) -> dict:
    argv = ["compare", "-m", row["label"], "-r", str(row["res"]), "-b", str(row["batch"]), "--dtype", row["dtype"],
            "-f", "json"]
    if "hardware" in row:
        argv += ["--hardware", opts.pop("hardware")]
    if train:
        argv += ["--mode", "train"]
    for k, v in opts.items():
        argv += [f"--{k}", v]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    (got,) = json.loads(out)
    return got


HW = {"H100 SXM": "h100-sxm", "RTX 4090": "rtx4090"}


def test_every_row_is_what_compare_prints_for_its_label(capsys):
    """A random sample of the rows of a sweep over fields, resolutions (one HxW), batches, dtypes and devices,
    each checked against `vitcost compare -m LABEL` at its settings: the same dict, key for key."""
    data = sweep_json(capsys, "vit_b16:patch=32", "--vary", "depth=4..12:4", "--vary", "heads=6,12",
                      "--vary", "patch=16,32", "-r", "224", "256x320", "-b", "1", "4", "--dtype", "fp32", "bf16",
                      "--hardware", "h100-sxm", "rtx4090", "--all")
    rows = data["rows"]
    assert data["evaluated"] == len(rows) == 3 * 2 * 2 * 2 * 2 * 2 * 2
    for row in random.Random(23).sample(rows, 16):
        mine = {k: v for k, v in row.items() if k not in ("label", "pareto")}
        assert mine == compare_row(capsys, row, hardware=HW[row["hardware"]])
        assert row["model"] == row["label"]


def test_training_rows_are_compares_training_rows(capsys):
    data = sweep_json(capsys, "vit_s16", "--vary", "depth=6,12", "--vary", "mlp_ratio=2..4:1", "-r", "384",
                      "-b", "8", "--dtype", "bf16", "--mode", "train", "--optimizer", "sgd", "--checkpoint", "block",
                      "--hardware", "h100-sxm", "--all")
    assert data["evaluated"] == 6 and not data["dropped"]
    for row in random.Random(5).sample(data["rows"], 3):
        mine = {k: v for k, v in row.items() if k not in ("label", "pareto")}
        assert mine == compare_row(capsys, row, train=True, hardware="h100-sxm", optimizer="sgd", checkpoint="block")


@pytest.mark.parametrize("opts", [["--dtype", "bf16", "--amp", "--attn", "flash"],
                                  ["--dtype", "fp16", "--no-amp", "--mode", "train", "--optimizer", "none"]])
def test_autocast_kernels_and_pure_16_bit_training_rows_are_compares(capsys, opts):
    data = sweep_json(capsys, "swin_t", "--vary", "window=7,14", "-r", "448", *opts, "--all")
    assert len(data["rows"]) == 2
    for row in data["rows"]:
        code, out, err = run(capsys, "compare", "-m", row["label"], "-r", "448", *opts, "-f", "json")
        assert code == 0, err
        assert {k: v for k, v in row.items() if k not in ("label", "pareto")} == json.loads(out)[0]


def test_labels_are_the_base_with_only_the_fields_that_differ(capsys):
    """vit_b16 has depth 12: varying depth over 6 and 12 from vit_b16:depth=6 gives vit_b16:depth=6 and plain
    vit_b16; a float range lists its steps as written; every label is accepted by compare."""
    data = sweep_json(capsys, "vit_b16:depth=6", "--vary", "depth=6,12", "--vary", "mlp_ratio=3..4:0.5", "--all")
    assert [r["label"] for r in data["rows"]] == [
        "vit_b16:depth=6,mlp_ratio=3", "vit_b16:depth=6,mlp_ratio=3.5", "vit_b16:depth=6",
        "vit_b16:mlp_ratio=3", "vit_b16:mlp_ratio=3.5", "vit_b16"]


def test_a_spec_file_base_gives_labels_compare_reads_back(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "spec", "swin_t")
    assert code == 0
    (tmp_path / "mine.toml").write_text(out.replace("window = 7 ", "window = 8 "), encoding="utf-8")
    data = sweep_json(capsys, "mine.toml", "--vary", "window=7,8", "--vary", "depths=2-2-6-2,2-2-18-2", "-r", "256")
    rows = data["rows"]
    assert [r["label"] for r in rows] == ["mine.toml:window=7", "mine.toml:window=7,depths=2-2-18-2", "mine.toml",
                                          "mine.toml:depths=2-2-18-2"]  # the first --vary varies slowest
    for row in rows:
        assert {k: v for k, v in row.items() if k not in ("label", "pareto")} == compare_row(capsys, row)


def test_ranges_are_inclusive():
    design = vitcost.parse_design("vit_b16")
    assert list(engine.parse_vary("depth=6..24:6", design).values) == [6, 12, 18, 24]
    assert list(engine.parse_vary("depth=6..23:6", design).values) == [6, 12, 18]
    assert list(engine.parse_vary("depth=3..5", design).values) == [3, 4, 5]
    assert list(engine.parse_vary("mlp_ratio=1..2:0.25", design).values) == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert list(engine.parse_vary("mlp_ratio=0.1..0.3:0.1", design).values) == [0.1, 0.2, 0.3]
    assert engine.parse_vary("global_blocks=2-5-8-11,[1,3]", vitcost.parse_design("vit_b16:window=14,class_tokens=0")
                             ).values == [(2, 5, 8, 11), (1, 3)]


def vit_params(dim: int, depth: int, patch: int = 16, res: int = 224, classes: int = 1000) -> int:
    """ViT's parameters by hand (one class token, learned positions, MLP ratio 4): the patch conv
    3*P*P*D + D, the class token D, positions (N+1)*D, per block two norms 4D, qkv 3D^2+3D, proj D^2+D,
    fc1 4D^2+4D, fc2 4D^2+D (12D^2+13D), the final norm 2D and the head D*classes+classes."""
    tokens = (res // patch) ** 2
    return (3 * patch * patch * dim + dim + dim + (tokens + 1) * dim + depth * (12 * dim * dim + 13 * dim) + 2 * dim
            + dim * classes + classes)


def test_limits_and_invalid_designs_are_counted_by_reason(capsys):
    """dim over 256..1024:128 and heads over 6,8,12: a design is invalid when heads does not divide dim (by
    hand below); of the valid ones, those over 100M params (ViT's count by hand) fall to the limit."""
    data = sweep_json(capsys, "vit_b16", "--vary", "dim=256..1024:128", "--vary", "heads=6,8,12",
                      "--vary", "depth=6,12", "--limit", "params<=100M", "--all")
    grid = list(itertools.product(range(256, 1025, 128), (6, 8, 12), (6, 12)))
    valid = [(d, h, n) for d, h, n in grid if d % h == 0]
    kept = [(d, h, n) for d, h, n in valid if vit_params(d, n) <= 100 * 10**6]
    assert data["evaluated"] == len(grid) == 7 * 3 * 2
    assert data["dropped"] == {"invalid: ViTSpec: dim=N is not divisible by heads=N.": len(grid) - len(valid),
                               "params<=100M": len(valid) - len(kept)}
    assert sorted(r["params"] for r in data["rows"]) == sorted(vit_params(d, n) for d, _, n in kept)
    assert len(kept) < len(valid) < len(grid)  # both reasons really drop something


def test_a_design_breaking_two_limits_is_counted_once_under_the_first(capsys):
    data = sweep_json(capsys, "vit_b16", "--vary", "depth=1,24", "--limit", "params<=150M", "--limit",
                      "macs<=30G")
    # depth 24 breaks both: its params by hand, and its blocks alone are over 30 GMACs (per block on 197
    # tokens: qkv, proj and MLP 12*N*D^2, scores and their product with V 2*N^2*D)
    assert vit_params(768, 24) > 150 * 10**6
    assert 24 * (12 * 197 * 768**2 + 2 * 197**2 * 768) > 30 * 10**9
    assert data["dropped"] == {"params<=150M": 1} and data["evaluated"] == 2


def brute_front(rows: list[dict], objectives: list[tuple[str, int]]) -> set[str]:
    """The non-dominated rows, by comparing every pair (sign -1 maximises)."""
    def vec(r: dict) -> list[float]:
        return [s * r[k] for k, s in objectives]

    out = set()
    for a in rows:
        if not any(all(x <= y for x, y in zip(vec(b), vec(a))) and vec(b) != vec(a) for b in rows):
            out.add(f"{a['label']}@{a['res']}")
    return out


def test_the_front_is_exactly_the_non_dominated_set(capsys):
    argv = ["swin_t", "--vary", "window=7,8,14", "--vary", "embed_dim=48,96", "--vary", "depths=2-2-6-2,2-2-18-2",
            "-r", "224", "448", "--hardware", "rtx4090", "--pareto", "time,activation_peak,max:params"]
    everything = sweep_json(capsys, *argv, "--all")
    front = sweep_json(capsys, *argv)
    rows = everything["rows"]
    expected = brute_front(rows, [("time_s", 1), ("activation_peak_bytes", 1), ("params", -1)])
    assert 1 < len(expected) < len(rows)
    assert {f"{r['label']}@{r['res']}" for r in rows if r["pareto"]} == expected
    assert {f"{r['label']}@{r['res']}" for r in front["rows"]} == expected
    assert all(r["pareto"] for r in front["rows"])
    assert [r["time_s"] for r in front["rows"]] == sorted(r["time_s"] for r in front["rows"])  # by the first one


def test_pareto_mask_against_brute_force_with_ties():
    rng = random.Random(1)
    for _ in range(50):
        k = rng.randint(1, 4)
        vecs = [tuple(rng.randint(0, 5) for _ in range(k)) for _ in range(rng.randint(1, 60))]
        vecs += vecs[: rng.randint(0, 5)]  # exact ties
        brute = [not any(all(x <= y for x, y in zip(b, a)) and b != a for b in vecs) for a in vecs]
        assert engine.pareto_mask(vecs) == brute


def test_sample_is_reproducible_distinct_and_valid(capsys):
    argv = ["vit_b16", "--vary", "dim=256..1024:64", "--vary", "heads=4..16", "--vary", "depth=4..24",
            "--sample", "12", "--all"]
    a = sweep_json(capsys, *argv, "--seed", "7")
    b = sweep_json(capsys, *argv, "--seed", "7")
    c = sweep_json(capsys, *argv, "--seed", "8")
    labels = [r["label"] for r in a["rows"]]
    assert labels == [r["label"] for r in b["rows"]] and a["dropped"] == b["dropped"]
    assert len(labels) == len(set(labels)) == 12
    assert labels != [r["label"] for r in c["rows"]]
    invalid = sum(a["dropped"].values())
    assert a["evaluated"] == 12 + invalid  # invalid draws are counted, and replaced by valid ones


def test_sample_of_a_small_space_stops_at_its_end(capsys):
    data = sweep_json(capsys, "vit_b16", "--vary", "heads=5,6,7,8", "--sample", "10", "--all")
    assert data["evaluated"] == 4 and len(data["rows"]) == 2  # 768 = 2^8 * 3: 6 and 8 divide it, 5 and 7 do not
    code, _, err = run(capsys, "sweep", "vit_b16", "--vary", "heads=5,6,7,8", "--sample", "10")
    assert code == 0 and err.startswith("--sample 10: only 2 valid designs in the 4 drawn")


def test_invalid_designs_group_by_their_complaint_whatever_the_numbers():
    assert engine.invalid_reason(VitcostError("ViTSpec.depth must be positive, got -5.")) == \
        engine.invalid_reason(VitcostError("ViTSpec.depth must be positive, got 0.")) == \
        "invalid: ViTSpec.depth must be positive, got N."
    assert engine.invalid_reason(VitcostError("window 14 is larger than the 7x7 grid of 2-2-6-2")) == \
        "invalid: window N is larger than the NxN grid of N-N-N-N"


def test_jobs_give_the_same_rows(capsys):
    argv = ["swin_t", "--vary", "window=7,14", "--vary", "embed_dim=64,96", "-r", "224", "448",
            "--pareto", "macs,activation_peak", "--all"]
    assert sweep_json(capsys, *argv, "--jobs", "2") == sweep_json(capsys, *argv)


def test_table_markdown_and_csv(capsys, tmp_path):
    argv = ["vit_b16", "--vary", "depth=6,12", "--vary", "heads=7,12", "--limit", "params<=60M"]
    code, out, err = run(capsys, "sweep", *argv)
    assert code == 0 and "vit_b16:depth=6" in out and "design" in out
    assert err == ("4 designs evaluated, 1 kept; dropped: 2 invalid: ViTSpec: dim=N is not divisible by heads=N.; "
                   "1 params<=60M\n")
    code, out, _ = run(capsys, "sweep", *argv, "-f", "markdown")
    assert code == 0 and out.startswith("**vitcost sweep vit_b16") and "| vit_b16:depth=6 |" in out
    code, out, err = run(capsys, "sweep", *argv, "-f", "csv")
    assert code == 0 and out.splitlines()[0].startswith("label,model,") and len(out.splitlines()) == 2


def test_html_front(capsys, tmp_path):
    target = tmp_path / "front.html"
    code, out, err = run(capsys, "sweep", "vit_b16", "--vary", "depth=4..12:4", "--vary", "dim=384,768",
                         "--hardware", "l4", "--pareto", "macs,time,params", "-o", str(target))
    assert code == 0 and out == "" and "on the front" in err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Pareto front" in page and "dominated" in page
    assert "<script src=" not in page  # plotly.js inline, nothing fetched
    assert "vit_b16:depth=4,dim=384" in page  # the table behind the figure


def test_library_returns_every_survivor_with_a_pareto_column():
    df = vitcost.sweep("vit_b16", vary={"depth": range(6, 13, 6), "heads": [6, 7, 12]}, res=[224, 384],
                       limits=["params<=90M"], pareto=["macs", "activation_peak"])
    assert list(df.columns[:2]) == ["label", "model"] and "pareto" in df.columns
    assert len(df) == 2 * 2 * 2 and df.attrs["evaluated"] == 12
    assert df.attrs["dropped"] == {"invalid: ViTSpec: dim=N is not divisible by heads=N.": 4}
    assert df["pareto"].sum() >= 1


BAD = [
    (["--vary", "depht=6,12"], "has no field 'depht'"),
    (["--vary", "depth=12..6"], "the range is empty"),
    (["--vary", "depth=a..b"], "is not a range"),
    (["--vary", "depth=6..12:0"], "the step must be positive"),
    (["--vary", "depth=6.5,7"], "must be a whole number"),
    (["--vary", "depths=1..3"], "has no field"),
    (["--vary", "global_blocks=1..3"], "needs a number field"),
    (["--vary", "mlp_ratio=1..3"], "needs a step"),
    (["--vary", "depth"], "is not FIELD=V1,V2"),
    (["--vary", "depth=6", "--vary", "depth=12"], "twice"),
    (["--limit", "latency<=3ms"], "unknown column 'latency'"),
    (["--limit", "params<=3Q"], "is not a number such as 300M"),
    (["--limit", "activation_peak<=80XB"], "is not a number with a unit"),
    (["--limit", "time<=3 fortnights", "--hardware", "l4"], "is not a time"),
    (["--limit", "params=3M"], "is not COLUMN<=VALUE"),
    (["--limit", "train_peak<=80GB"], "add --mode train"),
    (["--limit", "time<=1s"], "give --hardware"),
    (["--pareto", "macs,speed"], "unknown column 'speed'"),
    (["--pareto", "macs,,time"], "empty objective"),
    (["--pareto", "best:macs"], "the prefix is max:"),
    (["--pareto", "macs,macs"], "twice"),
    (["--mode", "train", "--pareto", "macs"], "not a column of train rows"),
    (["--vary", "depth=1..2000", "--vary", "dim=64..1024:64", "--max-designs", "10000"], "more than --max-designs"),
    (["--vary", "depth=1..1000000000", "--vary", "dim=1..1000000000"], "more than --max-designs 1,000,000"),
    (["--optimizer", "sgd"], "add --mode train"),
    (["--mode", "train", "--checkpoint", "often"], "not none, block or a number"),
    (["--sample", "0"], "--sample must be at least 1"),
    (["--sample", "2000000"], "more than --max-designs"),
    (["--amp", "--dtype", "fp32"], "--amp is autocast"),
    (["--pareto", "macs", "-o", "front.html"], "two or three objectives"),
    (["--jobs", "0"], "--jobs must be at least 1"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_and_exit_2_before_any_work(capsys, monkeypatch, tmp_path, extra, message):
    def no_work(*args, **kwargs):
        raise AssertionError("a design was costed before the input was checked")

    monkeypatch.setattr(engine, "evaluate", no_work)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "sweep", "vit_b16", *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("vitcost: error: ") and message in err, err
    assert not (tmp_path / "front.html").exists()


def test_bad_base_is_one_line(capsys):
    code, out, err = run(capsys, "sweep", "vit_b16:depth=12", "--vary", "heads=6,12")
    assert code == 2 and "changes nothing" in err and err.count("\n") == 1


def test_limit_units_read_as_everywhere():
    mode = engine.RunMode.train
    assert engine.parse_limit("train_peak<=80GiB", mode, False, False).value == 80 * 2**30
    assert engine.parse_limit("train_peak <= 80", mode, False, False).value == 80 * 10**9  # a bare size is GB
    assert engine.parse_limit("time<=250ms", mode, True, False).value == pytest.approx(0.25)
    assert engine.parse_limit("time<1.5s", mode, True, False).value == 1.5
    assert engine.parse_limit("params<=300M", mode, False, False).value == 300 * 10**6
    assert engine.parse_limit("img/s>=2K", mode, True, False).value == 2000
    with pytest.raises(VitcostError):
        engine.parse_limit("macs<=2G", mode, False, False)  # a training row has train_cost, not macs
