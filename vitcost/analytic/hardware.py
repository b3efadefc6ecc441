"""Device presets for the roofline and the memory wall (memory sizes are parsed in `vitcost.vocab`).

GPU figures are the vendors' dense (no sparsity) peaks, as gathered in shared/reference/published.md:
| GPU | BF16/FP16 TFLOP/s | TF32 | FP32 | memory | bandwidth |
| H100 SXM  | 989 | 494.5 | 67   | 80 GB  | 3.35 TB/s |
| H100 PCIe | 756 | 378   | 51   | 80 GB  | 2.0 TB/s  |
| H200 SXM  | 989 | 494.5 | 67   | 141 GB | 4.8 TB/s  |
| A100 SXM  | 312 | 156   | 19.5 | 80 GB  | 2.04 TB/s |
The marketed "80 GB" of HBM is 80 GiB of memory chips; the figures below keep the marketed number in
GiB (torch reports a little less as usable: 79.2 GiB on an H100).

fp32 matmuls run on the FP32 pipes unless TF32 is switched on (torch's default for matmul is off), so
`fp32` maps to the FP32 column. Elementwise work (norms, softmax, GELU) never runs on tensor cores;
the roofline gives it the FP32 (vector) peak.

The `cpu` preset is indicative only: a CPU's achievable peak depends on its vector units, clock and
the thread count, none of which torch reports. Its defaults are deliberately conservative (per
thread: 50 GFLOP/s, the order of one AVX2/AVX-512 core running sgemm; 5 GB/s of memory bandwidth,
capped at 40 GB/s for the socket); override them with --peak-tflops and --bandwidth.

This module does not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from vitcost.errors import VitcostError
from vitcost.vocab import parse_bytes, parse_size

TB = 10**12
GIB = 2**30

CPU_FLOPS_PER_THREAD = 50e9
CPU_BYTES_PER_THREAD = 5e9
CPU_BANDWIDTH_CAP = 40e9


@dataclass(frozen=True)
class Hardware:
    """Peak arithmetic (FLOP/s) per dtype for matmuls, the vector peak for elementwise work, memory
    bandwidth (bytes/s) and memory size (bytes). `indicative` marks figures that are guesses."""

    name: str
    matmul_flops: dict[str, float]  # dtype -> FLOP/s of matmul/conv work
    vector_flops: float  # FLOP/s of elementwise work (norms, softmax, GELU, adds)
    bandwidth: float  # bytes/s
    memory: int  # bytes
    indicative: bool = False

    def peak(self, dtype: str) -> float:
        """Matmul peak for `dtype` (fp32 | fp16 | bf16) in FLOP/s."""
        try:
            return self.matmul_flops[str(dtype)]
        except KeyError:
            raise VitcostError(f"no peak figure for dtype {dtype!r} on {self.name}.") from None

    def override(self, peak_tflops: float | None = None, bandwidth: float | None = None) -> Hardware:
        """The same device with a user-given matmul peak (TFLOP/s, every dtype) and/or bandwidth (bytes/s)."""
        hw = self
        if peak_tflops is not None:
            if not 0 < peak_tflops < math.inf:
                raise VitcostError(f"--peak-tflops must be a positive finite number, got {peak_tflops}.")
            flops = peak_tflops * TB
            hw = replace(hw, matmul_flops={d: flops for d in hw.matmul_flops},
                         vector_flops=min(hw.vector_flops, flops), name=f"{hw.name} (peak {peak_tflops:g} TFLOP/s)")
        if bandwidth is not None:
            if not 0 < bandwidth < math.inf:
                raise VitcostError(f"--bandwidth must be a positive finite number, got {bandwidth}.")
            hw = replace(hw, bandwidth=bandwidth, name=f"{hw.name} (bandwidth {bandwidth / TB:g} TB/s)")
        return hw


def _gpu(name: str, half: float, fp32: float, memory_gib: int, tbps: float) -> Hardware:
    return Hardware(name, {"bf16": half * TB, "fp16": half * TB, "fp32": fp32 * TB}, fp32 * TB, tbps * TB,
                    memory_gib * GIB)


PRESETS: dict[str, Hardware] = {
    "h100-sxm": _gpu("H100 SXM", 989, 67, 80, 3.35),
    "h100-pcie": _gpu("H100 PCIe", 756, 51, 80, 2.0),
    "h200": _gpu("H200 SXM", 989, 67, 141, 4.8),
    "a100": _gpu("A100 80GB SXM", 312, 19.5, 80, 2.04),
}


def cpu_preset(threads: int, memory: int | None = None) -> Hardware:
    """The indicative CPU preset for `threads` threads (see the module docstring for the figures)."""
    if threads < 1:
        raise VitcostError(f"thread count must be at least 1, got {threads}.")
    flops = CPU_FLOPS_PER_THREAD * threads
    bw = min(CPU_BYTES_PER_THREAD * threads, CPU_BANDWIDTH_CAP)
    name = f"CPU ({threads} thread{'s' if threads != 1 else ''})"
    return Hardware(name, {"fp32": flops, "bf16": flops, "fp16": flops}, flops, bw, memory or 0, indicative=True)


HARDWARE_NAMES: tuple[str, ...] = (*PRESETS, "cpu")


def get_hardware(name: str, threads: int = 1, memory: int | None = None) -> Hardware:
    """A preset by name (h100-sxm, h100-pcie, h200, a100, cpu)."""
    key = name.strip().lower()
    if key == "cpu":
        return cpu_preset(threads, memory)
    if key not in PRESETS:
        raise VitcostError(f"unknown hardware {name!r}; choose from {', '.join(HARDWARE_NAMES)}.")
    return PRESETS[key]


def preset_for_device_name(device_name: str) -> str | None:
    """The preset matching a CUDA device name ("NVIDIA H100 80GB HBM3" -> h100-sxm), or None."""
    n = device_name.upper()
    if "H200" in n:
        return "h200"
    if "H100" in n:
        return "h100-pcie" if "PCIE" in n else "h100-sxm"
    if "A100" in n:
        return "a100"
    return None


__all__ = ["Hardware", "PRESETS", "HARDWARE_NAMES", "cpu_preset", "get_hardware", "preset_for_device_name",
           "parse_bytes", "parse_size"]
