"""Cost of counting ViT-B/16 as the resolution grows: stock fvcore on a real forward, vitcost's meta-device
count (fvcore's convention, fused attention counted, nothing allocated), and the analytic estimate.

Each measurement runs in its own subprocess, so the peak RSS it reports belongs to that method alone
(it includes the interpreter and the libraries the method imports: torch and fvcore for the first two,
neither for the analytic estimate). Times are of the counting call only, imports and model building
excluded; the first call in a fresh process includes torch's one-time set-up of its dispatch
machinery, so the meta count is also timed a second time ("warm"). The real forward is skipped where
the analytic prediction of its memory (fp32 parameters + activation peak, attention scores included)
exceeds a quarter of the available RAM.

    python benchmarks/bench_counting.py [--res 224 512 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MODEL = "vit_b16"
METHODS = ("stock", "meta", "analytic")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(method: str, res: int) -> dict:
    """One measurement, in this process: the count, seconds of the counting call, peak RSS."""
    if method == "analytic":
        from vitcost import estimate

        start = time.perf_counter()
        total = estimate(MODEL, res).count("fvcore")
        seconds = time.perf_counter() - start
    else:
        import torch

        from vitcost.nets import build

        if method == "stock":  # as fvcore is usually run: real weights, a real input, explicit attention
            from fvcore.nn import FlopCountAnalysis

            model, x = build(MODEL, res, attn="math").eval(), torch.randn(1, 3, res, res)
            start = time.perf_counter()
            with torch.no_grad():
                total = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total()
        else:
            from vitcost.measure.counting import count

            model = build(MODEL, res, attn="sdpa", device="meta").eval()
            start = time.perf_counter()
            total = count(model, (1, 3, res, res), method="meta").total("fvcore")
            seconds = time.perf_counter() - start
            start = time.perf_counter()  # again, once torch's one-time dispatch set-up is done
            count(model, (1, 3, res, res), method="meta")
            return {"method": method, "res": res, "count": int(total), "seconds": seconds,
                    "warm_seconds": time.perf_counter() - start, "peak_rss": _peak_rss()}
        seconds = time.perf_counter() - start
    return {"method": method, "res": res, "count": int(total), "seconds": seconds, "peak_rss": _peak_rss()}


def measure(method: str, res: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", method, str(res)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"method": method, "res": res, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def real_forward_fits(res: int) -> tuple[bool, int, int]:
    from vitcost import estimate
    from vitcost.measure.check import predicted_forward_bytes
    from vitcost.measure.counting_meta import memory_budget

    need, budget = predicted_forward_bytes(estimate(MODEL, res)), memory_budget()
    return need <= budget, need, budget


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _secs(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _cell(r: dict) -> str:
    return f"{_secs(r['seconds'])}, {_mib(r['peak_rss'])}" if "error" not in r else r["error"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[224, 512, 1024, 2048])
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "RES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return

    print(f"{MODEL}, batch 1, fvcore convention; each method in its own process (peak RSS includes imports)\n")
    header = ["res", "tokens", "stock fvcore (real)", "vitcost meta", "meta warm", "analytic", "stock/meta time",
              "stock/meta RSS", "meta/analytic time", "meta/analytic RSS", "counts"]
    rows = []
    for res in args.res:
        fits, need, budget = real_forward_fits(res)
        got = {m: measure(m, res) for m in METHODS if m != "stock" or fits}
        stock, meta, ana = got.get("stock"), got["meta"], got["analytic"]
        counts = {m: r.get("count") for m, r in got.items()}
        agree = "equal" if len(set(counts.values())) == 1 else "DIFFER " + json.dumps(counts)
        stock_cell = _cell(stock) if stock else f"skipped: needs ~{_mib(need)} > budget {_mib(budget)}"
        stock = stock if stock and "error" not in stock else None
        rows.append([str(res), f"{(res // 16) ** 2 + 1:,}", stock_cell, _cell(meta), _secs(meta["warm_seconds"]),
                     _cell(ana),
                     f"{stock['seconds'] / meta['seconds']:.2f}x" if stock else "—",
                     f"{stock['peak_rss'] / meta['peak_rss']:.2f}x" if stock else "—",
                     f"{meta['seconds'] / ana['seconds']:,.0f}x", f"{meta['peak_rss'] / ana['peak_rss']:.1f}x",
                     f"{agree} ({meta['count']:,})"])
        print("  ".join(rows[-1]), flush=True)
    print()
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
