"""The liveness engine on small traces whose live bytes are derived by hand in each test: what a module
holds for its caller, what a local kept to the module's return adds, in-place ops, copies, function scopes
and rebinding. (Every family's figures against the live-tensor tracker are in tests/test_memory.py.)"""

from __future__ import annotations

from vitcost.analytic.liveness import PeakSteps, forward_steps
from vitcost.analytic.trace import Trace

E = 4  # float32
STATS = 2 * E  # LayerNorm's float32 mean and rstd, per row


def two_blocks() -> Trace:
    """A stem (64 elements) and two pre-norm MLP blocks on 16 rows of width 4, hidden 8."""
    t = Trace(1)
    t.conv("stem", 1, 3, 4, 4, 4, kernel=1, stride=1, pad=0, role="embed")  # [1, 4, 4, 4]: 64
    for i in range(2):
        p = f"blocks.{i}"
        with t.block(p, "", 64):
            t.norm(f"{p}.norm", 16, 4)  # 64
            t.linear(f"{p}.mlp.fc1", 16, 4, 8, role="mlp")  # 128
            t.gelu(f"{p}.mlp.act", 128)  # 128
            t.linear(f"{p}.mlp.fc2", 16, 8, 4, role="mlp")  # 64
            t.eltwise(p, 64)  # x + mlp(norm(x))
    return t


def steps(t: Trace, lists: tuple[str, ...] = ()) -> dict[str, int]:
    return forward_steps(t.ops, E, False, PeakSteps(), 1, lists).steps


def test_a_sequential_holds_its_first_input_and_a_module_its_argument():
    s = steps(two_blocks())
    # block 0 at GELU: its input (the stem's output, which `blocks` holds), norm's output (the MLP's argument,
    # held until the MLP returns), fc1's and GELU's outputs
    assert s["blocks.0.mlp.act"] == (64 + 64 + 128 + 128) * E
    # block 1: the stem's output still held by `blocks`, block 1's input (its caller's loop variable), the rest
    assert s["blocks.1.mlp.act"] == (64 + 64 + 64 + 128 + 128) * E
    # at fc2: fc1's output is gone (GELU was its last reader, inside its own module)
    assert s["blocks.1.mlp.fc2"] == (64 + 64 + 64 + 128 + 64) * E
    # the norm adds its float32 statistics, one pair per row
    assert s["blocks.1.norm"] == (64 + 64 + 64) * E + 16 * STATS


def test_a_module_list_is_not_called_and_holds_nothing():
    s = steps(two_blocks(), lists=("blocks",))
    assert s["blocks.1.mlp.act"] == (64 + 64 + 128 + 128) * E


def test_kept_local_inplace_op_and_rebinding():
    t = Trace(1)
    t.linear("a", 10, 10, 10, role="proj")  # 100 elements of x
    with t.block("m", "", 100):
        t.linear("m.qkv", 10, 10, 30, role="proj")  # 300, kept until m returns
        t.note(keep="m")
        t.gelu("m.act", 300)  # reads qkv: 300
        t.eltwise("m.relu", 300, kind="relu", inp=300)
        t.note(inplace=True)  # writes the act's storage
        first = t.key()
        t.linear("m.proj", 10, 30, 10, role="proj")  # 100
        t.linear("m.out", 10, 10, 10, role="proj")  # 100; the relu output lost its name here
        t.note(rebinds=(first,))
    s = steps(t)
    # x (held by m, its caller), qkv (kept), the act's storage (the relu's too), proj's output
    assert s["m.proj"] == (100 + 300 + 300 + 100) * E
    assert s["m.relu"] == (100 + 300 + 300) * E  # in place: nothing new
    # at m.out the relu output is still named (rebound only now); proj's output is read here
    assert s["m.out"] == (100 + 300 + 300 + 100 + 100) * E


def test_copies_views_and_function_scopes():
    t = Trace(1)
    t.linear("a", 10, 10, 10, role="proj")  # 100
    with t.block("b", "", 100):
        with t.scope("partition") as fn:  # pad (a copy), then windows that are a view of it
            t.copy("b", 120, "pad")
            t.copy("b", 120, "windows", view=True, keep=fn)
        t.linear("b.attn.qkv", 12, 10, 30, role="proj")  # 360, reads the windows
        t.copy("b", 100, "crop")  # reads qkv (the previous op), a copy of 100
        t.eltwise("b", 100)
    s = steps(t)
    # at the pad: a's output (the block's input, which the pad reads inside the function: held by it) and the pad
    assert s["b pad"] == (100 + 120) * E
    assert s["b windows"] == (100 + 120) * E  # a view: no new bytes
    # qkv reads the windows (the pad's storage): a's output is held by `b`, qkv's own output
    assert s["b.attn.qkv"] == (100 + 120 + 360) * E
    # the crop reads qkv (its last reader: freed after), the windows' storage died with qkv's module
    assert s["b crop"] == (100 + 360 + 100) * E
