"""What a real count holds: the peak resident memory of fvcore's jit trace and of a FlopCounterMode pass
on the reference nets, per family and size, beside the meta-device figures `vitcost check`'s counting
budget is predicted from (`counting_meta.forward_profile`).

Each measurement runs in its own subprocess under an address-space limit (RLIMIT_AS, `--limit-gib`),
so that no size can take the shared machine down: a run over the limit ends in a MemoryError and is
reported as such. The child builds the net and its input, collects, notes its resident set, resets the
kernel's high-water mark (/proc/self/clear_refs), runs one counter and reads the high-water mark
(VmHWM) again: the difference is what that counter held beyond the built model.

The printed ratios are measured / `counting_meta.count_hold_bytes` (the model the budget uses);
`tests/test_counting.py` holds the same model within 25% of a measurement at small sizes.

    python benchmarks/bench_counting_memory.py [--limit-gib 4] > reports/counting_memory.txt
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

# (preset, sizes): every family, at sizes whose counts stay well under the address-space limit
CASES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("vit_b16", (224, 384, 512)),
    ("vit_ti16", (224, 448)),
    ("igpt_s", (24, 32)),
    ("swin_t", (224, 384)),
    ("swinv2_t", (256,)),
    ("mvitv2_t", (224, 320)),
    ("nat_mini", (224, 384)),
    ("mixer_b16", (224, 384)),
    ("convnext_tiny", (224, 448)),
    ("resnet50", (224, 448)),
)
ATTN = {m: ("math",) for m in ("mixer_b16", "convnext_tiny", "resnet50")}  # no attention: one path


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _trim() -> None:
    """Hand freed heap pages back to the kernel, so that the next high-water mark starts clean."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(model: str, res: int, attn: str) -> list[dict]:
    import gc

    import torch

    from vitcost.measure import counting_meta as cm
    from vitcost.measure.counting_fvcore import count_fvcore
    from vitcost.measure.counting_torch import count_torch
    from vitcost.nets import build

    torch.set_num_threads(1)
    shape = (1, 3, res, res)
    meta = build(model, res, attn=attn, device="meta").eval()
    peak, grad_peak = cm.forward_profile(meta, cm.make_inputs(shape, meta=True, dtype=torch.float32))
    net = build(model, res, attn=attn).eval()
    x = torch.randn(shape)
    rows = []
    for backend, run in (("torch", count_torch), ("fvcore", count_fvcore)):
        gc.collect()
        _trim()
        base = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        run(net, (x,))
        held = _status("VmHWM") - base
        rows.append({"model": model, "res": res, "backend": backend, "attn": attn, "held": held, "live_peak": peak,
                     "grad_peak": grad_peak, "predicted": cm.count_hold_bytes(backend, peak, grad_peak)})
    return rows


def measure(model: str, res: int, attn: str, limit: int) -> list[dict]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, __file__, "--child", model, str(res), attn],
                          capture_output=True, text=True, preexec_fn=cap)
    if proc.returncode != 0:
        return [{"model": model, "res": res, "backend": "both", "attn": attn,
                 "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-gib", type=float, default=4.0, help="address-space limit of each child")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, res, attn = args.child
        print(json.dumps(child(model, int(res), attn)))
        return
    limit = int(args.limit_gib * 2**30)
    print(f"peak resident memory a count holds beyond the built model (MiB), one thread, RLIMIT_AS "
          f"{args.limit_gib:g} GiB per run")
    print(f"{'model':<14} {'res':>5} {'attn':<5} {'counter':<7} {'live peak':>9} {'grad_peak':>9} {'held':>8} "
          f"{'predicted':>9} {'ratio':>6}")
    worst = 0.0
    for model, sizes in CASES:
        for res in sizes:
            for attn in ATTN.get(model, ("math", "sdpa")):
                for r in measure(model, res, attn, limit):
                    if "error" in r:
                        print(f"{model:<14} {res:>5} {attn:<5} {r['backend']:<7} {r['error']}")
                        continue
                    ratio = r["held"] / r["predicted"]
                    worst = max(worst, abs(ratio - 1))
                    print(f"{model:<14} {res:>5} {attn:<5} {r['backend']:<7} {_mib(r['live_peak']):>9} "
                          f"{_mib(r['grad_peak']):>9} {_mib(r['held']):>8} {_mib(r['predicted']):>9} {ratio:>6.2f}",
                          flush=True)
    print(f"largest |held / predicted - 1|: {worst:.0%}")


if __name__ == "__main__":
    main()
