"""The shared vocabulary, parsed once at the edge (CLI options, library arguments) into typed values:
element type, attention kernel, resolution and memory size. Everything below receives these values.

`Dtype` and `Kernel` are `str` enums, so the CLI offers exactly these choices and a value still
compares equal to its name ("bf16" == Dtype.bf16). No torch here.
"""

from __future__ import annotations

import enum
import operator
import re
from typing import Any

from vitcost.errors import SpecError, VitcostError

# Bytes per element of every element type a forward or a training step holds: the one table.
BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int64": 8, "bool": 1}
F32 = BYTES["fp32"]  # float32: weights under autocast, gradients, optimizer state, norm statistics, log-sum-exp
INT64 = BYTES["int64"]  # labels, max-pool indices
BOOL = BYTES["bool"]  # dropout masks


class Dtype(str, enum.Enum):
    """Element type of weights, inputs and activations."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"

    @property
    def bytes(self) -> int:
        return BYTES[self.value]

    def __str__(self) -> str:
        return self.value


class Kernel(str, enum.Enum):
    """Attention kernel. math materialises the scores (q k^T, additive terms, softmax, @ v); sdpa lets
    torch's F.scaled_dot_product_attention pick a fused kernel; flash and efficient force that backend."""

    math = "math"
    sdpa = "sdpa"
    flash = "flash"
    efficient = "efficient"

    @property
    def fused(self) -> bool:
        """Whether the scores stay on chip (every kernel but math)."""
        return self is not Kernel.math

    @property
    def net_mode(self) -> str:
        """The reference nets' attention path: "math", or "sdpa" for every fused kernel."""
        return "math" if self is Kernel.math else "sdpa"

    def __str__(self) -> str:
        return self.value


class RunMode(str, enum.Enum):
    """What one row runs: one forward (inference) or one training step (forward, loss, backward, update)."""

    inference = "inference"
    train = "train"

    def __str__(self) -> str:
        return self.value


RUN_MODE_ALIASES = {"infer": RunMode.inference}

# The devices whose kernels the memory and time models know (CUDA's autocast lists and allocator, the CPU's)
DEVICES: tuple[str, ...] = ("cpu", "cuda")


class Convention(str, enum.Enum):
    """A counting convention: a projection of the cost vector (`analytic.cost.CONVENTIONS` says what each
    counts)."""

    macs = "macs"
    flops = "flops"
    fvcore = "fvcore"
    torch = "torch"

    def __str__(self) -> str:
        return self.value


class Optimizer(str, enum.Enum):
    """The optimizer a training step runs: its state is part of the step's memory."""

    none = "none"
    sgd = "sgd"  # with momentum: one float32 buffer per weight
    adamw = "adamw"  # exp_avg and exp_avg_sq: two float32 buffers per weight

    def __str__(self) -> str:
        return self.value


def _choice(enum_cls: type[enum.Enum], value: Any, what: str) -> Any:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        try:
            return enum_cls(value.strip().lower())
        except ValueError:
            pass
    choices = ", ".join(m.value for m in enum_cls)  # type: ignore[attr-defined]
    raise VitcostError(f"unknown {what} {value!r}; choose from {choices}.")


def parse_dtype(value: Any) -> Dtype:
    return _choice(Dtype, value, "dtype")


def parse_kernel(value: Any) -> Kernel:
    return _choice(Kernel, value, "attention kernel")


def parse_run_mode(value: Any) -> RunMode:
    """inference (or its alias infer) | train."""
    if isinstance(value, str) and value.strip().lower() in RUN_MODE_ALIASES:
        return RUN_MODE_ALIASES[value.strip().lower()]
    return _choice(RunMode, value, "--mode")


def parse_convention(value: Any) -> Convention:
    return _choice(Convention, value, "convention")


def parse_optimizer(value: Any) -> Optimizer:
    return _choice(Optimizer, value, "optimizer")


# `vitcost formula KIND`: the named formulas, each with what it gives (a design's total MACs besides)
FORMULA_KINDS: dict[str, str] = {
    "global_attention": "Omega(MSA) = 4hwC^2 + 2(hw)^2 C (Swin Eq. 1)",
    "window_attention": "Omega(W-MSA) = 4hwC^2 + 2M^2 hwC (Swin Eq. 2), h and w multiples of M",
    "conv": "Omega(conv) = HW Cin Cout K^2: one K x K convolution, stride 1, padding (K-1)/2",
    "local_attention": "Omega(NA) = 3HWD^2 + 2HWDK^2 (NAT Table 1): qkv + attention over K x K neighbours, H, W >= K",
}


PRECISIONS = ("autocast", "half")  # a 16-bit training step: autocast over fp32 weights, or the model in 16 bits


def parse_checkpoint(value: Any) -> int:
    """None/"none" -> 0 (no checkpointing); "block" -> 1; k (or "k") -> k blocks per checkpointed run."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return 0
    if isinstance(value, str) and value.strip().lower() == "block":
        return 1
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise VitcostError(f"checkpoint {value!r} is not none, block or a number of blocks.") from None
    if isinstance(value, bool) or k < 1 or str(value).strip() != str(k):
        raise VitcostError(f"checkpoint {value!r} is not none, block or a number of blocks (at least 1).")
    return k


def parse_precision(value: Any) -> str:
    name = str(value).strip().lower()
    if name not in PRECISIONS:
        raise VitcostError(f"unknown precision {value!r}; choose from {', '.join(PRECISIONS)}.")
    return name


def whole(value: Any, what: str, minimum: int = 1) -> int:
    """`value` as an int (numpy integers too; not bools, floats or strings), at least `minimum`."""
    if isinstance(value, bool):
        raise SpecError(f"{what} must be a whole number, got {value!r}.")
    try:
        n = operator.index(value)
    except TypeError:
        raise SpecError(f"{what} must be a whole number, got {value!r}.") from None
    if n < minimum:
        raise SpecError(f"{what} must be at least {minimum}, got {n}.")
    return n


def parse_threads(value: Any) -> int:
    """A CPU thread count: a whole number from 1 to this machine's cores (torch's thread pool crashes
    the process on absurd counts)."""
    import os

    n = whole(value, "the thread count")
    cores = os.cpu_count() or 1
    if n > cores:
        raise SpecError(f"the thread count {n} is more than this machine's {cores} cores.")
    return n


# ---------------------------------------------------------------------------------------------
# Resolutions

_RES_HELP = "is not a whole number, HxW or TxHxW (e.g. 224, 224x320 or 16x224x224)"


class Res(tuple):
    """An input size: the tuple (H, W), with the clip's frame count T beside it as `frames` (None for an
    image, HxW; a whole number for a video clip, TxHxW). Being the (H, W) tuple itself, it goes wherever an
    image size goes (`h, w = res`) and an image size equals the plain tuple; only the families that take a
    time axis read `frames` (`Family.frames`), where T = 1 is the image case."""

    frames: int | None

    def __new__(cls, h: int, w: int, frames: int | None = None) -> Res:
        self = super().__new__(cls, (h, w))
        self.frames = frames
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self[0], self[1], self.frames)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, tuple):
            return NotImplemented
        return tuple(self) == tuple(other) and self.frames == getattr(other, "frames", None)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(tuple(self)) if self.frames is None else hash((tuple(self), self.frames))

    def __repr__(self) -> str:
        return f"Res({self[0]}, {self[1]}" + (f", frames={self.frames})" if self.frames is not None else ")")

    @property
    def time(self) -> int:
        """T: the frames of a clip, 1 for an image."""
        return 1 if self.frames is None else self.frames

    @property
    def elements(self) -> int:
        """Pixels per channel of one input: T * H * W."""
        return self.time * self[0] * self[1]


def frames(res: tuple[int, int]) -> int | None:
    """The frame count carried beside an (H, W) size: None for an image (a plain tuple or an HxW `Res`)."""
    return getattr(res, "frames", None)


def input_pixels(res: tuple[int, int]) -> int:
    """Pixels per channel of one input of size `res`: T * H * W (T = 1 for an image)."""
    h, w = res
    return (frames(res) or 1) * h * w


def parse_res(res: Any) -> Res:
    """224, (224, 320), "224", "224x320" -> an image size (H, W); "16x224x224" or (16, 224, 224) -> a clip of
    T = 16 frames of 224 x 224 (see `Res`); anything else raises a VitcostError."""
    if isinstance(res, Res):
        return res
    given = res
    if isinstance(res, str):
        parts = res.strip().lower().split("x")
        if len(parts) not in (1, 2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise SpecError(f"resolution {res!r} {_RES_HELP}.")
        res = [int(p) for p in parts]
    t = None
    if isinstance(res, (tuple, list)) and len(res) == 3:
        t, res = res[0], res[1:]
    if isinstance(res, (tuple, list)) and len(res) in (1, 2):
        vals = list(res) * (3 - len(res))
    else:
        vals = [res, res]
    try:
        h, w = (operator.index(v) for v in vals if not isinstance(v, bool))
        t = None if t is None else operator.index(t if not isinstance(t, bool) else "a bool")
    except (TypeError, ValueError):
        raise SpecError(f"resolution {given!r} {_RES_HELP}.") from None
    if h <= 0 or w <= 0 or (t is not None and t <= 0):
        size = f"{h}x{w}" if t is None else f"{t}x{h}x{w}"
        raise SpecError(f"resolution must be positive, got {size}.")
    return Res(h, w, t)


def parse_resolutions(values: Any) -> list[Res]:
    """One resolution or several (see `parse_res`), each once, smallest first (by pixels per channel, T x H x
    W, then by T). A single string or number is one resolution, never a sequence of characters."""
    if isinstance(values, (str, int)) or not hasattr(values, "__iter__"):
        values = [values]
    sizes = {parse_res(v) for v in values}
    if not sizes:
        raise SpecError("no resolution given.")
    return sorted(sizes, key=lambda r: (r.elements, r.time, tuple(r)))


def res_label(res: tuple[int, int]) -> int | str:
    """224 for a square image, '224x320' otherwise, '16x224x224' for a clip: the `res` field of every
    JSON/CSV row."""
    h, w = res
    t = frames(res)
    if t is not None:
        return f"{t}x{h}x{w}"
    return h if h == w else f"{h}x{w}"


# ---------------------------------------------------------------------------------------------
# Memory sizes

# Unit -> (bytes, spelling). A bare number is GB, the unit vendors quote device memory in.
_UNITS: dict[str, tuple[int, str]] = {
    "": (10**9, "GB"), "B": (1, "B"),
    "KB": (10**3, "KB"), "MB": (10**6, "MB"), "GB": (10**9, "GB"), "TB": (10**12, "TB"),
    "KIB": (2**10, "KiB"), "MIB": (2**20, "MiB"), "GIB": (2**30, "GiB"), "TIB": (2**40, "TiB"),
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


MAX_MEMORY_BYTES = 2**70  # 1 ZiB: past it the memory walls' roots lose their integer precision


def parse_size(text: str) -> tuple[int, str]:
    """'80GB' -> (80*10**9, '80 GB'); '141GiB' -> (141*2**30, '141 GiB'); '80' -> 80 GB.

    SI suffixes (KB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) powers of 1024;
    a bare number is GB. Anything else raises a VitcostError."""
    m = _SIZE.match(str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise VitcostError(f"memory size {text!r} is not a number with a unit such as 80GB, 141GiB or 512MiB.")
    scale, spelling = _UNITS[unit]
    value = float(m.group(1)) * scale
    if value < 1:
        raise VitcostError(f"memory size {text!r} must be at least one byte.")
    if value > MAX_MEMORY_BYTES:
        raise VitcostError(f"memory size {text!r} is larger than any device (the most accepted is 1 ZiB).")
    return int(round(value)), f"{m.group(1)} {spelling}"


def parse_bytes(text: str) -> int:
    """The bytes of a memory size (see `parse_size`)."""
    return parse_size(text)[0]


__all__ = ["BYTES", "F32", "INT64", "BOOL", "DEVICES", "Dtype", "Kernel", "RunMode", "Convention", "Optimizer",
           "parse_dtype", "parse_kernel", "parse_run_mode", "parse_optimizer", "whole", "Res", "frames", "input_pixels",
           "parse_res", "parse_resolutions", "res_label", "parse_size", "parse_bytes"]
