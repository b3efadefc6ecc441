"""Property tests of the inputs: spec files mutated at random (values, nesting, encodings), every numeric
option of every command given non-finite, huge, negative, zero and non-numeric values, tables at huge
sizes, and a factory that is interrupted.

The rule everywhere: a result (exit 0), or exit 2 with exactly one line on stderr starting
`vitcost: error:`; never a traceback, never a file written by a run that failed; the library raises only
`VitcostError`. A run that does not finish is a failure too (`_within`).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import vitcost
from vitcost.cli import main
from vitcost.errors import VitcostError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECONDS = 20  # far above any cheap run here (a compare at 64 px takes milliseconds); below it means a hang


@contextlib.contextmanager
def _within(seconds: int = SECONDS):
    """Fail, rather than hang, when the body runs longer than `seconds`."""
    def expire(*_):
        raise AssertionError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`vitcost ARGV` in this process: (exit code, stdout, stderr). `main` always ends in SystemExit."""
    with _within(), pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def ok_or_one_line(code: int, err: str) -> bool:
    """Exit 0, or exit 2 with one line (besides `check`'s "vitcost: counting ..." progress lines)."""
    if "Traceback" in err:
        return False
    if code == 0:
        return True
    lines = [line for line in err.splitlines() if not line.startswith("vitcost: counting ")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("vitcost: error: ")


# --- 1. spec files ---------------------------------------------------------------------------------------

PRESETS = ["vit_b16", "swin_t", "swinv2_t", "mvitv2_t", "mixer_b16", "igpt_s", "nat_tiny", "dinat_tiny",
           "convnext_tiny", "resnet50", "sam_vit_b", "deit_s16_distilled"]
NUMBERS = st.one_of(
    st.integers(),
    st.integers(2**53, 10**40), st.integers(-(10**40), -1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63, 2**64 + 1, float("nan"), float("inf"), float("-inf")]),
    st.booleans(),
    st.text(max_size=8),
)


@cache
def _written(preset: str, fmt: str) -> str:
    """The spec file `vitcost spec PRESET -f FMT` writes (through the CLI, once per preset and format)."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as e:
        main(["spec", preset, "-f", fmt])
    assert e.value.code == 0
    return out.getvalue()


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    return str(v)


def _nest(value: str, depth: int, kind: str, fmt: str) -> str:
    """`value` inside `depth` arrays (or tables)."""
    if kind == "array":
        return "[" * depth + value + "]" * depth
    key = "a = " if fmt == "toml" else '"a": '
    return ("{" + key) * depth + value + "}" * depth


def _mutate(text: str, fmt: str, field: str, value: str) -> str:
    """The spec file `text` with `field`'s value written as `value` (text in the file's own syntax)."""
    if fmt == "toml":
        return re.sub(rf"(?m)^{field} = [^#\n]*", lambda _: f"{field} = {value} ", text, count=1)
    return re.sub(rf'(?m)^  "{field}": .*?(,?)$', lambda m: f'  "{field}": {value}{m.group(1)}', text, count=1)


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "nul", "truncated"]


def _encode(text: str, encoding: str, cut: float) -> bytes:
    if encoding == "latin-1":  # a non-ASCII byte that is no UTF-8
        return ("# caf\u00e9\n" + text if text.lstrip().startswith(("#", "family")) else text.replace('"', '"\u00e9', 1)
                ).encode("latin-1", errors="replace")
    raw = text.encode("utf-8-sig" if encoding == "utf-8-sig" else "utf-16" if encoding == "utf-16" else
                      "utf-16-le" if encoding == "utf-16-le" else "utf-8")
    at = int(len(raw) * cut)
    if encoding == "nul":
        return raw[:at] + b"\x00" + raw[at:]
    if encoding == "truncated":
        return raw[:at]
    return raw


def _check_spec_file(path: Path, capsys) -> None:
    code, _, err = run(capsys, "compare", "-m", str(path), "-r", "64")
    assert ok_or_one_line(code, err), (path.read_bytes()[:300], code, err)
    with _within():
        try:
            vitcost.estimate(str(path), 64)
        except VitcostError as e:
            assert str(e) and "\n" not in str(e)


@SETTINGS
@given(preset=st.sampled_from(PRESETS), fmt=st.sampled_from(["toml", "json"]), data=st.data(),
       encoding=st.sampled_from(ENCODINGS), cut=st.floats(0, 1))
@example(preset="vit_b16", fmt="json", data=None, encoding="utf-8", cut=1.0)  # 1e308 as mlp_ratio: see below
def test_mutated_spec_files_load_or_are_one_line(preset, fmt, data, encoding, cut, capsys, tmp_path):
    text = _written(preset, fmt)
    fields = [k for k in json.loads(_written(preset, "json")) if k != "family"]
    if data is None:  # the explicit examples
        field, value = "mlp_ratio", 1e308
    else:
        field = data.draw(st.sampled_from(fields))
        value = data.draw(NUMBERS)
    written = _toml_value(value) if fmt == "toml" else json.dumps(value)
    if data is not None and data.draw(st.booleans()):  # inside a list of such values: a tuple field takes one
        written = "[" + ", ".join([written] * data.draw(st.integers(1, 4))) + "]"
    text = _mutate(text, fmt, field, written)
    path = tmp_path / f"design.{fmt}"
    path.write_bytes(_encode(text, encoding, cut))
    _check_spec_file(path, capsys)


@pytest.mark.parametrize("field,value", [
    ("mlp_ratio", "1e308"),  # int(dim * 1e308) was an OverflowError
    ("depth", str(10**30)),  # a walker per block never finished
    ("depth", "1000000"),
])
def test_spec_file_values_found_by_the_properties(field, value, capsys, tmp_path):
    path = tmp_path / "design.toml"
    path.write_text(_mutate(_written("vit_b16", "toml"), "toml", field, value))
    code, _, err = run(capsys, "compare", "-m", str(path), "-r", "64")
    assert code == 2 and ok_or_one_line(code, err), err
    with pytest.raises(VitcostError):
        vitcost.estimate(str(path), 64)


@SETTINGS
@given(preset=st.sampled_from(PRESETS), fmt=st.sampled_from(["toml", "json"]), data=st.data(),
       depth=st.one_of(st.integers(1, 40), st.integers(900, 5000)), kind=st.sampled_from(["array", "table"]),
       encoding=st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-8-sig"]))
def test_spec_files_nested_at_random_depths(preset, fmt, data, depth, kind, encoding, capsys, tmp_path):
    fields = [k for k in json.loads(_written(preset, "json")) if k != "family"]
    field = data.draw(st.sampled_from(fields))
    leaf = _toml_value(data.draw(NUMBERS)) if fmt == "toml" else json.dumps(data.draw(NUMBERS))
    text = _mutate(_written(preset, fmt), fmt, field, _nest(leaf, depth, kind, fmt))
    path = tmp_path / f"design.{fmt}"
    path.write_bytes(_encode(text, encoding, 1.0))
    _check_spec_file(path, capsys)


# --- 2. every numeric option of every command -------------------------------------------------------------

BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "infinity", "1e308", "-1e308", "1e309", str(10**30), str(2**63),
               str(2**64), "-1", "0", "-0", "-0.0", "0.0", "abc", "", " ", "1,5", "0x10", "1_000", "5e-324"]

# (argv before the value, the value's prefix, whether the command takes -o): every option that takes a number,
# as each command's --help lists them. profile runs with --predict-only; check with a --method meta count of a
# 64 px ViT-Ti, which its validation refuses before counting whenever an option is bad.
COMPARE = ["compare", "-m", "vit_ti16", "-r", "64"]
PROFILE = ["profile", "-m", "vit_ti16", "-r", "64", "--predict-only", "--hardware", "cpu"]
CHECK = ["check", "-m", "vit_ti16", "-r", "64", "--method", "meta", "--attn", "math"]
OPTION_CASES = [
    (["compare", "-m", "vit_ti16", "-r"], ""), ([*COMPARE, "--batch"], ""), ([*COMPARE, "--patch"], ""),
    (["compare", "-m", "swin_t", "-r", "64", "--window"], ""),
    ([*COMPARE, "--hardware", "cpu", "--peak-tflops"], ""), ([*COMPARE, "--hardware", "cpu", "--bandwidth"], ""),
    ([*COMPARE, "--mode", "train", "--batch"], ""), ([*COMPARE, "--mode", "train", "--checkpoint"], ""),
    ([*COMPARE, "--mode", "train", "--device-memory"], ""), ([*COMPARE, "--mode", "train", "--device-memory"], "GiB"),
    ([*COMPARE, "--set"], "mlp_ratio="), ([*COMPARE, "--set"], "depth="), ([*COMPARE, "--set"], "patch="),
    ([*COMPARE, "--set"], "vit_ti16:heads="), ([*COMPARE, "--set"], "num_classes="),
    (["compare", "-m", "swin_t", "-r", "64", "--set"], "depths=2-2-"),
    (["compare", "-m", "vit_ti16:depth=2,mlp_ratio="], ""),
    ([*PROFILE, "-r"], ""), ([*PROFILE, "--batch"], ""), ([*PROFILE, "--threads"], ""), ([*PROFILE, "--repeats"], ""),
    ([*PROFILE, "--warmup"], ""), ([*PROFILE, "--max-seconds"], ""), ([*PROFILE, "--peak-tflops"], ""),
    ([*PROFILE, "--bandwidth"], ""), ([*PROFILE, "--device-memory"], ""), ([*PROFILE, "--device-memory"], "GB"),
    ([*PROFILE, "--mode", "train", "--checkpoint"], ""), ([*PROFILE, "--set"], "mlp_ratio="),
    (["savings", "vit_ti16", "-r"], ""), (["savings", "vit_ti16", "-r", "64", "--batch"], ""),
    (["savings", "vit_ti16", "-r", "64", "--hardware", "cpu", "--peak-tflops"], ""),
    (["savings", "vit_ti16", "-r", "64", "--hardware", "cpu", "--bandwidth"], ""),
    ([*CHECK, "--tol"], ""), ([*CHECK, "--top"], ""), ([*CHECK, "--set"], "depth="),
    (["check", "-m", "vit_ti16", "--method", "meta", "-r"], ""),
    (["check", "--module", "vitcost.nets.examples:small_cnn", "--method", "meta", "--input"], "1x3x"),
    (["report", "-m", "vit_ti16", "-r", "64", "--batch"], ""), (["report", "-m", "vit_ti16", "--res"], ""),
    (["report", "-m", "vit_ti16", "-r", "64", "--breakdown-res"], ""),
    (["report", "-m", "vit_ti16", "-r", "64", "--device-memory"], "H100="),
]
# report's successful runs build a whole HTML report: only the values every option refuses go to it
REFUSED_BY_ALL = {"nan", "NaN", "inf", "-inf", "infinity", "-1", "abc", "", " ", "1,5"}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(OPTION_CASES), value=st.one_of(st.sampled_from(BAD_NUMBERS), st.text(max_size=6)),
       to_file=st.booleans())
@example(case=([*COMPARE, "--hardware", "cpu", "--peak-tflops"], ""), value="nan", to_file=True)
@example(case=([*CHECK, "--tol"], ""), value="inf", to_file=True)
@example(case=([*PROFILE, "--threads"], ""), value=str(2**63), to_file=True)
# 10^30 GB: the training memory wall's root lost its integer precision and the solver stepped one batch at a time
@example(case=(["compare", "-m", "vit_ti16", "-r", "64", "--mode", "train", "--device-memory"], ""),
         value="1" + "0" * 30, to_file=False)
# 10^30 px: the reference net's position embedding had more rows than torch.empty takes (a traceback)
@example(case=(["check", "-m", "vit_ti16", "--method", "meta", "-r"], ""), value="1" + "0" * 30, to_file=False)
def test_numeric_options_give_a_result_or_one_line(case, value, to_file, capsys, tmp_path_factory, monkeypatch):
    argv, prefix = case
    tmp_path = tmp_path_factory.mktemp("option")  # one per example: a success before must not hide a failure
    if argv[0] == "report" and value not in REFUSED_BY_ALL:
        value = "nan"
    monkeypatch.chdir(tmp_path)
    out_file = tmp_path / ("r.html" if argv[0] == "report" else "out.txt")
    argv = [*argv, prefix + value] + (["-o", str(out_file)] if to_file or argv[0] == "report" else [])
    code, _, err = run(capsys, *argv)
    assert ok_or_one_line(code, err), (argv, code, err)
    if code != 0:
        assert not out_file.exists(), argv  # a failed run writes nothing
        assert sorted(p.name for p in tmp_path.iterdir()) == [], argv  # no temporary file left either


FIGURES = {"bandwidth": "tb_per_s", "vector": "tflops", "matmul.fp32": "tflops", "matmul.fp16": "tflops",
           "memory": "gib", "launch_overhead": "us"}


@SETTINGS
@given(section=st.sampled_from(sorted(FIGURES)), value=NUMBERS, command=st.sampled_from(["compare", "profile",
                                                                                          "savings"]))
@example(section="memory", value=1.7976931348623157e308, command="profile")  # finite GiB, infinite bytes
def test_hardware_files_with_bad_figures(section, value, command, capsys, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hardware")
    text = (Path(vitcost.__file__).parent / "devices" / "h200.toml").read_text()
    unit = FIGURES[section]
    text, n = re.subn(rf"(?ms)^(\[{re.escape(section)}\]\n(?:.*?\n)*?){unit} = [^\n]*",
                      lambda m: f"{m.group(1)}{unit} = {_toml_value(value)}", text, count=1)
    assert n == 1, section
    hw = tmp_path / "dev.toml"
    hw.write_text(text)
    out_file = tmp_path / "out.txt"
    argv = {"compare": ["compare", "-m", "vit_ti16", "-r", "64"], "savings": ["savings", "vit_ti16", "-r", "64"],
            "profile": ["profile", "-m", "vit_ti16", "-r", "64", "--predict-only"]}[command]
    code, _, err = run(capsys, *argv, "--hardware", str(hw), "-o", str(out_file))
    assert ok_or_one_line(code, err), (section, value, code, err)
    assert out_file.exists() == (code == 0)


# --- 3. exact integers at any size -----------------------------------------------------------------------

def _vit_b16_params(res: int) -> int:
    """ViT-B/16 by hand (D = 768, 12 blocks, 1000 classes): patch embedding 3*16*16*D + D, class token D,
    position embedding (N + 1) rows of D, per block qkv 3D^2 + 3D, proj D^2 + D, fc1 4D^2 + 4D, fc2 4D^2 + D and
    two norms 4D, the final norm 2D, the head 1000D + 1000."""
    d, n = 768, (res // 16) ** 2
    return 3 * 16 * 16 * d + d + d + (n + 1) * d + 12 * (12 * d * d + 13 * d) + 2 * d + 1000 * d + 1000


def _vit_b16_macs(res: int) -> int:
    """Per block over T = N + 1 tokens: qkv 3TD^2, proj TD^2, MLP 8TD^2, scores and AV 2T^2 D; plus the patch
    embedding N * 3*16*16 * D and the head D * 1000."""
    d, n = 768, (res // 16) ** 2
    t = n + 1
    return 12 * (12 * t * d * d + 2 * t * t * d) + n * 3 * 16 * 16 * d + d * 1000


def _fixed(n: int, unit: int, decimals: int) -> str:
    """n / unit (n >= 0) with `decimals` decimals and thousands commas, rounded half up, in integers only."""
    q, r = divmod(n * 10**decimals, unit)
    q += 2 * r >= unit
    whole, frac = divmod(q, 10**decimals)
    return f"{whole:,}" + (f".{frac:0{decimals}d}" if decimals else "")


def test_hand_derivation_matches_the_published_vit_b16():
    assert _vit_b16_params(224) == 86_567_656  # timm's param_count for vit_base_patch16_224
    norms = 25 * 197 * 768 * 5  # fvcore counts 5 per element of each of the 25 LayerNorms; the macs convention none
    assert round((_vit_b16_macs(224) + norms) / 1e9, 2) == 17.58  # timm's infer_gmacs (fvcore)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(res=st.one_of(st.integers(2**40, 10**40), st.sampled_from([10**20, 10**9, 2**63, 10**40 + 16])))
@example(res=10**20)  # printed 30,000,000,000,000,001,826,021,443,431,825,408.0M params
def test_huge_sizes_are_exact_integers_in_the_table(res, capsys):
    code, out, err = run(capsys, "compare", "-m", "vit_b16", "-r", "224", str(res), "-f", "markdown")
    assert code == 0, err
    row = [line for line in out.splitlines() if line.startswith("| vit_b16")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(res)
    assert cells[2] == f"{(res // 16) ** 2:,}"
    assert cells[3] == _fixed(_vit_b16_params(res), 10**6, 1) + "M"
    assert cells[4] == _fixed(_vit_b16_macs(res), 10**9, 0)
    # growth is a ratio of two counts, a float: no more digits than a float holds (~1.6e+72x, not 73 digits)
    assert len(re.sub(r"\D", "", cells[8].partition("e")[0])) <= 15, cells[8]


# --- 4. a factory that is interrupted ----------------------------------------------------------------------

def test_a_factory_interrupted_is_exit_130_and_one_line(capsys, monkeypatch, tmp_path):
    (tmp_path / "interrupted_factory.py").write_text("def build():\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = run(capsys, "check", "--module", "interrupted_factory:build", "--input", "1x3x8x8")
    assert code == 130 and err == "vitcost: interrupted\n" and out == ""
