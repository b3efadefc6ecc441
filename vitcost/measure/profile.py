"""`vitcost profile`'s engine: predict, guard, measure and compare, one row per model x resolution.

For every configuration the analytic model predicts the forward's peak memory at two levels
(`vitcost.analytic.memory`: live tensors, and the allocator level with the kernels' scratch buffers of
the device) and its roofline time (`vitcost.analytic.roofline`). Unless only the prediction is asked
for, the reference module is built on the device, and one forward is run under the live-tensor tracker
(attention-score bytes, the SDPA kernel that ran, peak live tensors), one more for the allocator level
(CUDA: max_memory_allocated; CPU: torch.profiler's memory records), then the forward is timed. The
`mem_*` fields keep their meaning (on CUDA `measured_mem_bytes` is the allocator's figure); the
`*_alloc_*` fields are the allocator level on every device. Before anything is allocated the predicted
total (weights + input + activation peak) is checked against the free memory: a configuration that
cannot fit is skipped with the figure it needs, and a real out-of-memory error is caught and marked,
so a sweep always runs to its end.

With mode "train" a row is one training step instead (forward, cross-entropy loss, backward, optimizer
step; `TRAIN_COLUMNS`): the predicted parts (`vitcost.analytic.train_memory.train_memory`: weights,
gradients, optimizer state, saved activations, backward and step peaks), the step's FLOPs with the forward
checkpointing runs again, and the step's time (`vitcost.analytic.train_time.step_time`); measured, the
same parts on the reference net (`vitcost.measure.train_memory.measure_train_step`, live tensors, the
float32 net under autocast for bf16/fp16, checkpointing per run of blocks), the allocator's step peak
(CUDA: max_memory_allocated over one timed step; CPU: torch.profiler's records) and the median time of
whole steps after warm-up.

Rows carry the environment (device, its name, torch version, dtype, batch, attention kernel, threads)
so that a saved file explains itself. torch is imported only when something is measured.
"""

from __future__ import annotations

import gc
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.analytic.hardware import TB, Hardware, get_hardware, preset_for_device_name
from vitcost.analytic.memory import MemoryPrediction, predict_memory
from vitcost.analytic.memory_wall import memory_wall
from vitcost.analytic.roofline import Roofline, forward_time, roofline
from vitcost.design import Design, resolve_designs, spec_dict
from vitcost.errors import VitcostError
from vitcost.vocab import Dtype, Kernel, Optimizer, parse_dtype, parse_kernel, parse_resolutions, res_label, whole

DEVICE_CHOICES = ("auto", "cpu", "cuda")
MODES = ("inference", "train")

# Columns every row has, in order (the HTML report reads these names).
COLUMNS = ("model", "family", "res", "frames", "batch", "dtype", "attn", "attn_backend", "device", "device_name",
           "torch_version", "threads", "status", "note", "params", "macs", "flops", "hardware", "roofline_bound",
           "predicted_time_s", "time_model", "measured_time_s", "time_spread_s", "time_ratio", "predicted_mem_bytes",
           "measured_mem_bytes", "mem_ratio", "measured_tensor_peak_bytes", "mem_method", "predicted_peak_at",
           "predicted_alloc_bytes", "measured_alloc_bytes", "alloc_ratio", "alloc_method", "predicted_alloc_peak_at",
           "weights_bytes", "input_bytes",
           "predicted_total_bytes", "predicted_attn_bytes", "measured_attn_bytes",
           "predicted_attn_peak_bytes", "measured_attn_peak_bytes", "achieved_tflops", "peak_fraction",
           "peak_tflops", "bandwidth_tbps", "device_memory_bytes", "memory_wall_res", "spec")

# The parts of a training step that --mode train predicts and measures (`TrainMemory.parts()` names).
TRAIN_PARTS = ("weights", "gradients", "optimizer_state", "activations_saved", "backward_peak", "step_peak")
# Columns of every --mode train row, in order.
TRAIN_COLUMNS = ("model", "family", "res", "frames", "batch", "dtype", "attn", "mode", "optimizer", "checkpoint",
                 "device", "device_name", "torch_version", "threads", "status", "note", "params", "step_flops",
                 "recompute_flops", "hardware", "predicted_time_s", "time_model", "measured_time_s", "time_spread_s",
                 "time_ratio", *(f"predicted_{k}_bytes" for k in TRAIN_PARTS),
                 *(f"measured_{k}_bytes" for k in TRAIN_PARTS),
                 "step_peak_ratio", "predicted_peak_at", "measured_backward_peak_op", "input_bytes",
                 "predicted_weight_casts_bytes", "measured_weight_casts_bytes", "mem_method",
                 "measured_alloc_step_peak_bytes", "alloc_method", "spec")


@dataclass
class ProfileConfig:
    """What to profile and how (the CLI's options)."""

    models: list[Any]
    res: list[Any]
    device: str = "auto"  # auto | cpu | cuda
    dtype: Dtype = Dtype.fp32
    batch: int = 1
    attn: Kernel = Kernel.math
    repeats: int = 5
    warmup: int = 2
    device_memory: int | None = None  # bytes; default: the hardware preset's, or the machine's memory
    hardware: str | None = None  # a profile's name or file; default: from the device
    peak_tflops: float | None = None
    bandwidth: float | None = None  # bytes/s
    predict_only: bool = False
    threads: int | None = None
    max_seconds: float | None = None  # skip runs whose predicted forward time exceeds this
    set_items: list[str] | None = None  # --set overrides (see vitcost.design.resolve_designs)
    mode: str = "inference"  # inference (one forward) | train (one training step)
    optimizer: Any = None  # train: none | sgd | adamw (default adamw)
    checkpoint: Any = None  # train: none | block | N blocks per checkpointed run (default none)
    amp: bool | None = None  # inference: autocast over fp32 weights; train: False = the model in 16 bits
    sizes: list[tuple[int, int]] = field(init=False, default_factory=list)
    designs: list[Design] = field(init=False, default_factory=list)
    every: int = field(init=False, default=0)  # train: the checkpoint as blocks per run, 0 = none

    def __post_init__(self) -> None:
        self.attn = parse_kernel(self.attn)
        self.dtype = parse_dtype(self.dtype)
        if self.device not in DEVICE_CHOICES:
            raise VitcostError(f"unknown device {self.device!r}; choose from {', '.join(DEVICE_CHOICES)}.")
        self.batch = whole(self.batch, "batch")
        if self.repeats < 1 or self.warmup < 0:
            raise VitcostError("--repeats must be at least 1 and --warmup at least 0.")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise VitcostError(f"--max-seconds must be positive, got {self.max_seconds}.")
        self.sizes = parse_resolutions(self.res)
        self.designs = resolve_designs(self.models, self.set_items)
        if self.threads is None and self.hardware is not None and self.device != "cuda":
            # a profile calibrated on this CPU holds for the thread count it was measured at: run at it
            self.threads = get_hardware(self.hardware).threads
        if self.amp and self.dtype is Dtype.fp32:
            raise VitcostError("--amp is autocast to 16 bits: give --dtype fp16 or bf16 with it, not fp32.")
        self.mode = str(getattr(self.mode, "value", self.mode))
        if self.mode not in MODES:
            raise VitcostError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}.")
        if self.mode != "train":
            if self.optimizer is not None or self.checkpoint is not None:
                raise VitcostError("--optimizer and --checkpoint describe a training step: add --mode train.")
            self.amp = bool(self.amp)
            return
        from vitcost.vocab import parse_checkpoint, parse_optimizer

        self.optimizer = parse_optimizer(self.optimizer or "adamw").value
        self.every = parse_checkpoint(self.checkpoint)
        self.checkpoint = {0: "none", 1: "block"}.get(self.every, str(self.every))


@dataclass(frozen=True)
class Environment:
    """Where the measurement runs (or, for --predict-only, what it is predicted for)."""

    device: str  # cpu | cuda
    device_name: str
    torch_version: str
    threads: int
    free_bytes: int | None  # memory free for the run; None when unknown (no torch)

    def row(self) -> dict[str, Any]:
        return {"device": self.device, "device_name": self.device_name, "torch_version": self.torch_version,
                "threads": self.threads}


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise VitcostError("measuring needs torch (pip install 'vitcost[torch]'); use --predict-only "
                           "for the prediction alone.") from None
    return torch


def environment(device: str, threads: int | None = None, need_torch: bool = True) -> Environment:
    """Resolve `auto`, fix the CPU thread count when asked, and describe the device.

    Without `need_torch` (a prediction only) torch is not imported: `auto` means the CPU, and the
    torch version is read from the installed package's metadata."""
    if not need_torch and device != "cuda":
        import os
        from importlib.metadata import PackageNotFoundError, version

        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            torch_version = ""
        return Environment("cpu", _cpu_name(), torch_version, threads or os.cpu_count() or 1, _cpu_free())
    torch = _torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise VitcostError("--device cuda was asked for but torch sees no CUDA device.")
        free, _ = torch.cuda.mem_get_info()
        return Environment("cuda", torch.cuda.get_device_name(), torch.__version__, torch.get_num_threads(), free)
    from vitcost.measure.timing import set_threads

    n = set_threads(threads)
    return Environment("cpu", _cpu_name(), torch.__version__, n, _cpu_free())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_free() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _cpu_total() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().total)


def resolve_hardware(cfg: ProfileConfig, env: Environment) -> Hardware:
    """The roofline device: --hardware (a profile's name or file), else the profile matching the CUDA
    device's name, else the CPU profile; then --peak-tflops (for the run's dtype) / --bandwidth overrides."""
    name = cfg.hardware
    if name is None:
        name = preset_for_device_name(env.device_name) if env.device == "cuda" else "cpu"
        if name is None:
            if cfg.peak_tflops is None or cfg.bandwidth is None:
                raise VitcostError(f"no hardware preset matches {env.device_name!r}; give --hardware or both "
                                   "--peak-tflops and --bandwidth.")
            name = "h100-sxm"  # replaced by the overrides below
    hw = get_hardware(name, env.threads, _cpu_total())
    return hw.override(cfg.peak_tflops, cfg.bandwidth, cfg.dtype.value)


def device_budget(cfg: ProfileConfig, hw: Hardware, env: Environment) -> int | None:
    """Device memory for the memory wall: --device-memory, else the preset's, else the machine's."""
    if cfg.device_memory is not None:
        return cfg.device_memory
    if hw.memory:
        return hw.memory
    return env.free_bytes


def plan(cfg: ProfileConfig) -> list[tuple[Design, tuple[int, int]]]:
    """Every design x resolution to profile, in order."""
    return [(d, hw) for d in cfg.designs for hw in cfg.sizes]


def _fmt_gib(n: float) -> str:
    gib = n / 2**30
    return f"{gib:,.0f} GiB" if gib >= 10 else f"{gib:.3g} GiB"


def prediction_row(p: Design, est: Estimate, pred: MemoryPrediction | None, roof: Roofline, cfg: ProfileConfig,
                   env: Environment, hw: Hardware, wall: int | None, budget: int | None) -> dict[str, Any]:
    """The predicted half of a row. Under autocast (`pred` None: no activation-memory figure, see
    `Estimate.require_single_width`) the weights and the input are fp32 (timm's --amp), the rest None."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    ft = forward_time(est, hw)  # the one forward-time figure (compare shows the same)
    h, w = est.res
    memory = {
        "weights_bytes": est.params * est.weight_bytes_per_elem,
        "input_bytes": est.input_elems * (4 if est.amp else est.bytes_per_elem),
    } if pred is None else {
        "predicted_mem_bytes": pred.activation_peak_bytes, "predicted_peak_at": pred.peak_at,
        "predicted_alloc_bytes": pred.allocator_peak_bytes, "predicted_alloc_peak_at": pred.allocator_peak_at,
        "weights_bytes": pred.weights_bytes, "input_bytes": pred.input_bytes,
        "predicted_total_bytes": pred.total_bytes,
        "predicted_attn_bytes": pred.stored_score_bytes, "predicted_attn_peak_bytes": pred.stored_score_peak_bytes,
    }
    row.update({
        "model": p.name, "family": p.family, "res": res_label(est.res), "frames": est.res.frames, "batch": est.batch,
        "dtype": est.dtype.value, "attn": cfg.attn.value, "attn_backend": "", **env.row(), "status": "predicted",
        "note": "",
        "params": est.params, "macs": est.macs, "flops": est.flops, "hardware": hw.label,
        "roofline_bound": roof.bound, "predicted_time_s": ft["time_s"], "time_model": ft["time_model"], **memory,
        "peak_tflops": roof.peak_flops / TB, "bandwidth_tbps": roof.bandwidth / TB, "device_memory_bytes": budget,
        "memory_wall_res": wall, "spec": spec_dict(p.spec),
    })
    return row


def _sdpa_context(attn: str) -> Any:
    """A zero-argument callable giving the SDPA backend selection for `attn` (None: torch chooses)."""
    if attn not in ("flash", "efficient"):
        return None
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = SDPBackend.FLASH_ATTENTION if attn == "flash" else SDPBackend.EFFICIENT_ATTENTION
    return lambda: sdpa_kernel([backend])


def _with_autocast(context: Any, device: str, dtype: Any) -> Any:
    """`context` (a zero-argument callable giving a context manager, or None) with torch.autocast around it."""
    import contextlib

    torch = _torch()

    @contextlib.contextmanager
    def both() -> Iterator[None]:
        with torch.autocast(device_type=device, dtype=dtype), (context or contextlib.nullcontext)():
            yield

    return both


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    torch = _torch()
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cannot allocate memory" in text)


def _release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch = _torch()
        torch.cuda.empty_cache()


def _skipped(row: dict[str, Any], need: int | None, cfg: ProfileConfig, env: Environment, per: str) -> bool:
    """Mark `row` skipped when the predicted `need` bytes exceed the device's free memory or the predicted
    time per `per` (forward | step) exceeds --max-seconds; whether it was."""
    free = _torch().cuda.mem_get_info()[0] if env.device == "cuda" else _cpu_free()
    if free is not None and need is not None and need > free:
        row.update(status="skipped", note=f"needs {_fmt_gib(need)} > {_fmt_gib(free)} free")
    elif cfg.max_seconds is not None and row["predicted_time_s"] > cfg.max_seconds:
        row.update(status="skipped", note=f"predicted {row['predicted_time_s']:.3g} s per {per} > --max-seconds "
                                          f"{cfg.max_seconds:g}")
    else:
        return False
    return True


def measure_row(row: dict[str, Any], p: Design, est: Estimate, roof: Roofline, cfg: ProfileConfig,
                env: Environment) -> dict[str, Any]:
    """Build the reference module, measure one forward's memory and time the forward; fills `row`."""
    torch = _torch()
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.measure.timing import time_forward
    from vitcost.nets import build
    from vitcost.nets.build import torch_dtype

    if _skipped(row, row["predicted_total_bytes"], cfg, env, "forward"):
        return row
    net = x = None
    context = _sdpa_context(cfg.attn)
    if cfg.amp:  # timm's --amp: the float32 net and input under autocast at the 16-bit dtype
        context = _with_autocast(context, env.device, torch_dtype(cfg.dtype))
    failure: tuple[str, str] | None = None
    try:
        net = build(p, est.res, attn=cfg.attn.net_mode, device=env.device,
                    dtype=Dtype.fp32 if cfg.amp else cfg.dtype).eval()
        x = torch.randn(*est.input_shape, device=env.device,
                        dtype=torch_dtype(Dtype.fp32 if cfg.amp else cfg.dtype))
        mem = measure_forward_memory(net, x, context)
        timing = time_forward(net, x, warmup=cfg.warmup, repeats=cfg.repeats, context=context)
    except Exception as err:  # noqa: BLE001  (an OOM or an unavailable kernel ends this row, not the sweep)
        failure = _classify(err, cfg.attn)
        if failure is None:
            raise
    finally:
        net = x = None
    _release(env.device)  # after the handler: the error's traceback no longer holds the forward's tensors
    if failure is not None:
        row.update(status=failure[0], note=failure[1])
        return row
    tflops, fraction = roof.achieved(timing.median_s)
    row.update({
        "status": "ok", "attn_backend": mem.backend, "threads": timing.threads,
        "measured_time_s": timing.median_s, "time_spread_s": timing.spread_s,
        "time_ratio": timing.median_s / row["predicted_time_s"] if row["predicted_time_s"] else None,
        "measured_mem_bytes": mem.peak_bytes, "measured_tensor_peak_bytes": mem.tensor_peak_bytes,
        "mem_method": mem.method,
        "mem_ratio": mem.peak_bytes / row["predicted_mem_bytes"] if row["predicted_mem_bytes"] else None,
        "measured_alloc_bytes": mem.allocator_peak_bytes, "alloc_method": mem.allocator_method,
        "alloc_ratio": (mem.allocator_peak_bytes / row["predicted_alloc_bytes"]
                        if mem.allocator_peak_bytes is not None and row["predicted_alloc_bytes"] else None),
        "measured_attn_bytes": mem.score_bytes, "measured_attn_peak_bytes": mem.score_peak_bytes,
        "achieved_tflops": tflops, "peak_fraction": fraction,
    })
    if cfg.attn.fused and "math" in mem.backend.split("+"):
        row["note"] = ("SDPA ran the math kernel for some layers: their scores were materialised, the prediction "
                       "assumes a fused kernel")
    return row


def _classify(err: Exception, attn: str) -> tuple[str, str] | None:
    """(status, note) for an error that ends one row: out of memory, an SDPA kernel this device or
    dtype lacks, a size the model cannot take. None for anything else (a bug: let it surface)."""
    if _is_oom(err):
        return "oom", _one_line(err)
    if any(phrase in str(err).lower() for phrase in ("no available kernel", "no viable backend")):
        return "skipped", f"{attn} kernel not available here: {_one_line(err)}"
    if isinstance(err, VitcostError):
        return "skipped", str(err)
    if "expected more than 1 value per channel" in str(err).lower():  # train-mode BatchNorm on a 1x1 map
        return "skipped", f"the net cannot train at this size and batch: {_one_line(err)}"
    return None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def train_row(p: Design, est: Estimate, cfg: ProfileConfig, env: Environment, hw: Hardware) -> dict[str, Any]:
    """The --mode train row of one design at one resolution: the predicted step (`train_memory`'s parts,
    the step's FLOPs with the recomputed forward, `train_time.step_time`'s time), and unless predict_only the
    measured one (`measure_train_step`'s parts, the median step time)."""
    from vitcost.analytic.cost import project
    from vitcost.analytic.train_memory import train_memory
    from vitcost.analytic.train_time import step_time
    from vitcost.analytic.training import train_cost

    half = cfg.amp is False and cfg.dtype is not Dtype.fp32
    tm = train_memory(est, Optimizer(cfg.optimizer), cfg.every, cfg.attn, env.device,
                      precision="half" if half else "autocast")
    parts = tm.parts()
    recompute = project(tm.recompute, "flops")
    row: dict[str, Any] = dict.fromkeys(TRAIN_COLUMNS)
    step_s, time_model = step_time(est, hw, tm.recompute, Optimizer(cfg.optimizer), amp=not half)
    row.update({
        "model": p.name, "family": p.family, "res": res_label(est.res), "frames": est.res.frames, "batch": est.batch,
        "dtype": est.dtype.value, "attn": cfg.attn.value, "mode": "train", "optimizer": cfg.optimizer,
        "checkpoint": cfg.checkpoint, **env.row(), "status": "predicted", "note": "", "params": est.params,
        "step_flops": train_cost(est).count("flops") + recompute, "recompute_flops": recompute, "hardware": hw.label,
        "predicted_time_s": step_s, "time_model": time_model,
        "predicted_peak_at": tm.peak_at,
        "input_bytes": tm.input, "predicted_weight_casts_bytes": tm.weight_casts, "spec": spec_dict(p.spec),
        **{f"predicted_{k}_bytes": parts[k] for k in TRAIN_PARTS},
    })
    return row if cfg.predict_only else measure_train_row(row, p, est, cfg, env)


def measure_train_row(row: dict[str, Any], p: Design, est: Estimate, cfg: ProfileConfig,
                      env: Environment) -> dict[str, Any]:
    """Build the reference net in float32 (bf16/fp16: autocast over forward and loss), measure one
    steady-state training step part by part, then time whole steps; fills `row`."""
    torch = _torch()
    from vitcost.analytic.trace import blocks as block_marks
    from vitcost.measure.train_memory import measure_train_step, time_train_step
    from vitcost.nets import build
    from vitcost.nets.build import torch_dtype

    if _skipped(row, row["predicted_step_peak_bytes"], cfg, env, "step"):
        return row
    half = cfg.amp is False and cfg.dtype is not Dtype.fp32  # --no-amp: the model itself in 16 bits
    amp = None if cfg.dtype is Dtype.fp32 or half else torch_dtype(cfg.dtype)
    blocks = [(m.prefix, m.stage) for m in block_marks(est.ops)] if cfg.every else None
    context = _sdpa_context(cfg.attn)
    net = x = None
    failure: tuple[str, str] | None = None
    try:
        with context() if context is not None else _null():
            net = build(p, est.res, attn=cfg.attn.net_mode, device=env.device, dtype=cfg.dtype if half else Dtype.fp32)
            x = torch.randn(*est.input_shape, device=env.device,
                            dtype=torch_dtype(cfg.dtype if half else Dtype.fp32))
            mem = measure_train_step(net, x, optimizer=cfg.optimizer, amp=amp, checkpoint=blocks, every=cfg.every or 1,
                                     allocator=env.device == "cpu")
            _release(env.device)
            timing, cuda_peak = time_train_step(net, x, optimizer=cfg.optimizer, amp=amp, warmup=cfg.warmup,
                                                repeats=cfg.repeats)
    except Exception as err:  # noqa: BLE001  (an OOM or an unavailable kernel ends this row, not the sweep)
        failure = _classify(err, cfg.attn)
        if failure is None:
            raise
    finally:
        net = x = None
    _release(env.device)
    if failure is not None:
        row.update(status=failure[0], note=failure[1])
        return row
    measured = {"weights": mem.weights_bytes, "gradients": mem.gradients_bytes,
                "optimizer_state": mem.optimizer_state_bytes, "activations_saved": mem.activations_saved_bytes,
                "backward_peak": mem.backward_peak_bytes, "step_peak": mem.step_peak_bytes}
    alloc = cuda_peak if env.device == "cuda" else mem.allocator_step_peak_bytes
    row.update({
        "status": "ok", "threads": timing.threads, "measured_time_s": timing.median_s,
        "time_spread_s": timing.spread_s,
        "time_ratio": timing.median_s / row["predicted_time_s"] if row["predicted_time_s"] else None,
        **{f"measured_{k}_bytes": measured[k] for k in TRAIN_PARTS},
        "step_peak_ratio": mem.step_peak_bytes / row["predicted_step_peak_bytes"],
        "measured_backward_peak_op": mem.backward_peak_op, "measured_weight_casts_bytes": mem.weight_cast_bytes,
        "mem_method": mem.method, "measured_alloc_step_peak_bytes": alloc,
        "alloc_method": ("torch.cuda.max_memory_allocated over one timed step" if env.device == "cuda" else
                         "torch.profiler memory records over one step, plus the resident bytes"),
    })
    return row


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


class ProfileSession:
    """One sweep: the environment, the roofline device and the memory budget are resolved once."""

    def __init__(self, cfg: ProfileConfig) -> None:
        self.cfg = cfg
        self.env = environment(cfg.device, cfg.threads, need_torch=not cfg.predict_only)
        self.hw = resolve_hardware(cfg, self.env)
        if cfg.predict_only and not self.hw.indicative and not self.hw.cpu:  # a GPU profile, not this machine
            self.env = replace(self.env, device="cuda", device_name=self.hw.name, free_bytes=None)
        self.budget = device_budget(cfg, self.hw, self.env)
        self.plan = plan(cfg)
        # every configuration is estimated up front: a size a design cannot take is an error before any run
        amp = bool(cfg.amp) and cfg.mode != "train"
        self._estimates = {(p.name, res): evaluate(p, res, cfg.batch, cfg.dtype, cfg.attn, amp)
                           for p, res in self.plan}
        self._walls: dict[str, Any] = {}

    def wall(self, p: Design) -> Any:
        """The memory wall of `p` for this sweep's batch, dtype, kernel and budget (None: no budget)."""
        if p.name not in self._walls:
            c = self.cfg
            self._walls[p.name] = memory_wall(p, self.budget, c.batch, c.dtype, c.attn) if self.budget else None
        return self._walls[p.name]

    def walls(self) -> list[dict[str, Any]]:
        """One row per model: the largest square resolution whose forward fits in the budget (none in
        train mode: `vitcost compare --mode train --device-memory` solves the training step's wall)."""
        if self.cfg.mode == "train" or self.cfg.amp:
            return []
        out = []
        seen: set[str] = set()
        for p, _ in self.plan:
            w = self.wall(p)
            if w is None or p.name in seen:
                continue
            seen.add(p.name)
            out.append({"model": p.name, "family": p.family, "device_memory_bytes": self.budget,
                        "batch": self.cfg.batch, "dtype": self.cfg.dtype.value, "attn": self.cfg.attn.value,
                        "memory_wall_res": w.res, "total_bytes": w.total_bytes, "next_res": w.next_res,
                        "next_total_bytes": w.next_total_bytes, "limited_by": w.limited_by})
        return out

    def run(self, p: Design, res: tuple[int, int]) -> dict[str, Any]:
        """The row of one design at one resolution: predicted, and measured unless predict_only."""
        cfg, env = self.cfg, self.env
        est = self._estimates[(p.name, res)]
        if cfg.mode == "train":
            return train_row(p, est, cfg, env, self.hw)
        wall = self.wall(p) if not est.amp else None
        # the allocator level depends on the device; under autocast there is no activation-memory figure
        pred = None if est.amp else predict_memory(est, cfg.attn, env.device, env.threads)
        roof = roofline(est, self.hw, cfg.attn)
        row = prediction_row(p, est, pred, roof, cfg, env, self.hw, wall.res if wall else None, self.budget)
        return row if cfg.predict_only else measure_row(row, p, est, roof, cfg, env)

    def rows(self) -> Iterator[dict[str, Any]]:
        for p, res in self.plan:
            yield self.run(p, res)


def run_profile(cfg: ProfileConfig) -> list[dict[str, Any]]:
    """Every row of the sweep `cfg` (see COLUMNS)."""
    return list(ProfileSession(cfg).rows())


__all__ = ["ProfileConfig", "ProfileSession", "Environment", "COLUMNS", "TRAIN_COLUMNS", "TRAIN_PARTS", "MODES",
           "DEVICE_CHOICES", "train_row",
           "environment", "resolve_hardware", "plan", "run_profile"]
