"""Time of one training step, per kernel: the forward's kernels (`time_model.kernels`), the backward
kernels each of them causes, the loss, and the optimizer's update, timed on a device by the same
per-class rule as the forward (`time_model.kernel_time`). A step is what a training loop runs between
two updates: zero the gradients, forward and cross-entropy loss, backward, optimizer step.

Backward of a forward kernel (eager torch's autograd, one kernel per derivative):
* a product (linear, conv, an attention product q k^T, scores @ v, q R^T): the gradients of both
  operands, each a product of the forward's size: two kernels of the forward's FLOPs and bytes; a layer
  reading the image (the patch embedding, the stem) only its weight's. A linear or conv with a bias
  reduces dY for the bias's gradient (a pass over the output);
* a fused attention call: the flash / memory-efficient backward, which recomputes q k^T and the
  probabilities from the saved log-sum-exp: five score-sized products against the forward's two
  (2.5x its FLOPs), reading q, k, v, the output and its gradient and writing dq, dk, dv (2x its bytes);
* a memory-bound op: its kind's `backward_passes` in the op table (`ops.OpKind`) times its forward bytes;
  inside an attention call, softmax reads y and dy and writes dx (1.5x), an additive term's gradient is
  a reduction over the batch for the table (a third of its forward: one pass of three), and a scale, a
  residual pooling add, a layout copy or a cast is undone by one kernel of the same bytes;
* an add of a float32 parameter (ViT's position embedding) reduces dY over the batch (half its forward's
  bytes); a layer-scale product also multiplies for dx and reduces x * dy for gamma (2x).

Around them: the loss (log-softmax, its backward, float32 [B, classes], four passes); autocast's
16-bit weight gradients cast to the float32 `.grad` (the forward's weight-cast kernel again); with
gradients zeroed in place (`set_to_none=False`, torch < 2.0's default) every parameter tensor is
zeroed once and its gradient accumulated into it (read both, write one); and the optimizer:

    sgd    momentum and Nesterov (timm's "sgd"): buf = momentum * buf + g; g = g + momentum * buf;
           p = p - lr * g: 4 elementwise kernels per tensor, 44 bytes per fp32 parameter
    adamw  decay, both moments, the denominator's sqrt, scale and eps, the update: 9 kernels per tensor,
           104 bytes per parameter
    none   no update

one launch per tensor per kernel (`foreach=False`, torch < 2.0's for-loop implementation) or one per
kernel for all tensors (`foreach=True`, torch >= 2.0 on CUDA). No torch here.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ops import OPS
from vitcost.analytic.time_model import Kernel, TimeDevice, kernel_time, kernels
from vitcost.analytic.train_memory import param_tensors
from vitcost.analytic.training import reads_constant
from vitcost.vocab import F32, Optimizer

PRODUCT_STEPS = frozenset({"qk", "av", "rel_h", "rel_w", "rel_t", "kv", "num", "den"})  # attention-call products
FUSED_BACKWARD_FLOPS = 2.5  # five score-sized products against the forward's two
FUSED_BACKWARD_BYTES = 2.0  # q, k, v, o, do read; dq, dk, dv written; against q, k, v read and o written
# attention-call steps and copies: backward bytes over the forward's
STEP_PASSES = {"softmax": 1.5, "term": 1 / 3, "rel_sum": 1.0, "rel_add": 1.0, "scale": 1.0, "residual": 1.0,
               "cast": 1.0, "layout": 1.0, "phi_k": 1.5, "phi_q": 1.5, "k_sum": 1.0, "eps": 1.0, "normalise": 1.5}
PARAM_PASSES = {"add+param": 0.5, "scale+param": 2.0}
LOSS_PASSES = 4  # log-softmax forward (read, write) and its backward (read the probabilities, write dx)
# The update per parameter tensor: (kernels, bytes per parameter) of each optimizer's step
UPDATE = {Optimizer.none: (0, 0), Optimizer.sgd: (4, 44), Optimizer.adamw: (9, 104)}


def _backward(k: Kernel, grad_input: bool) -> list[Kernel]:
    """The backward kernels of one forward kernel (see the module docstring)."""
    if k.kind == "fused":
        return [k._replace(flops=k.flops * FUSED_BACKWARD_FLOPS, other_flops=k.other_flops * FUSED_BACKWARD_FLOPS,
                           bytes=k.bytes * FUSED_BACKWARD_BYTES)]
    entry = OPS.get(k.kind)
    if entry is not None and entry.time in ("gemm", "conv") or k.kind in PRODUCT_STEPS and k.flops:
        return [k] * (2 if grad_input else 1)
    if k.kind == "weight_cast":  # the 16-bit weight gradient cast to the float32 .grad
        return [k]
    passes = entry.backward_passes if entry is not None else PARAM_PASSES.get(k.kind, STEP_PASSES.get(k.kind, 1.0))
    return [k._replace(bytes=k.bytes * passes, other_flops=k.other_flops * passes)] if passes else []


def step_kernels(est: Any, amp: bool = True, optimizer: Optimizer = Optimizer.sgd, *, set_to_none: bool = True,
                 foreach: bool = True, **runtime: Any) -> list[Kernel]:
    """Every kernel of one training step of `est`, in order: forward, loss, backward, update (`runtime`:
    the keywords of `time_model.kernels`)."""
    fwd = kernels(est, amp, **runtime)
    image = next((i for i, op in enumerate(est.ops) if OPS[op.kind].product), None)
    constant = {op.path for i, op in enumerate(est.ops) if OPS[op.kind].product and reads_constant(op, i == image)}
    detached = {(op.path, op.kind) for op in est.ops if "detached" in op.tags}  # no backward (`cost.TAGS`)
    biased = {op.path: op.out for op in est.ops if OPS[op.kind].product and op.cost.eltwise}
    e = 2 if amp else est.dtype.bytes
    logits = est.ops[-1].out if est.ops else 0
    loss = [Kernel("loss", "memory", 0.0, 0.0, float(logits * F32 * LOSS_PASSES / 2), "fp32", "loss")] * 2
    back: list[Kernel] = []
    for k in reversed(fwd):
        if (k.path, k.kind) in detached:
            continue
        back += _backward(k, k.path not in constant)
        if k.kind in ("linear", "conv") and k.path in biased:
            back.append(Kernel(k.path, "memory", 0.0, 0.0, float(biased[k.path] * e), k.dtype, "bias_grad"))
    return fwd + loss + back + _update(est, optimizer, set_to_none, foreach)


def _update(est: Any, optimizer: Optimizer, set_to_none: bool, foreach: bool) -> list[Kernel]:
    """Zeroing the gradients (in place), accumulating into them, and the optimizer's update."""
    params, tensors = est.params, param_tensors(est.ops)
    out: list[Kernel] = []

    def add(n_kernels: int, nbytes: float, kind: str) -> None:
        launches = n_kernels if foreach else n_kernels * tensors
        out.extend(Kernel("optimizer", "memory", 0.0, 0.0, nbytes / launches, "fp32", kind)
                   for _ in range(launches))

    if not set_to_none:
        add(1, params * F32, "zero_grad")
        add(1, params * 3 * F32, "accumulate_grad")
    n_kernels, per_param = UPDATE[Optimizer(optimizer)]
    if n_kernels:
        add(n_kernels, params * per_param, f"{Optimizer(optimizer).value}_update")
    return out


def train_step_time(est: Any, device: TimeDevice, amp: bool = True, optimizer: Optimizer = Optimizer.sgd, *,
                    set_to_none: bool = True, foreach: bool = True, **runtime: Any) -> float:
    """Seconds of one training step of `est` on `device` (see the module docstring)."""
    return sum(kernel_time(k, device) for k in step_kernels(est, amp, optimizer, set_to_none=set_to_none,
                                                            foreach=foreach, **runtime))




TRAIN_TIME_MODELS = {"per-op": "the per-op time model: the forward's kernels (fitted on measured runs), their "
                               "backward kernels and the update (`train_time`)",
                     "roofline": "a roofline of the step (`savings.train_roofline`), a lower bound"}


def step_time(est: Any, hw: Any, recompute: Any = None, optimizer: Optimizer = Optimizer.adamw, *,
              amp: bool = True) -> tuple[float, str]:
    """Seconds of one training step of `est` on the device profile `hw`, and which model gave them: the
    per-op model where the profile carries fitted efficiencies (`[efficiency]`, fitted on 16-bit autocast
    runs; an fp32 step takes the fp32 peaks at the same efficiencies) and its matmul launches are as large
    as the measured ones (`time_model.in_measured_regime`, `time_model.regime_floor`), with torch >= 2.0's
    defaults (gradients set to None, multi-tensor optimizer kernels, one loop over the tensors on a CPU);
    else the roofline. A 16-bit step is
    autocast over fp32 weights, or with `amp` False the model in 16 bits. The one step time compare, savings
    and profile show. The forward that checkpointing runs again (`recompute`, a Cost) is charged at the forward's
    time per MAC."""
    from vitcost.analytic.cost import Cost
    from vitcost.analytic.time_model import forward_time, in_measured_regime, regime_floor, time_device

    recompute = recompute or Cost()
    fp32 = est.dtype.value == "fp32"
    if not hw.efficiency or not in_measured_regime(est, amp and not fp32, regime_floor(hw)):
        from vitcost.analytic.savings import train_roofline

        return train_roofline(est, hw, recompute), "roofline"
    device = time_device(hw)
    amp = amp and not fp32
    # torch's optimizers run their multi-tensor kernels only on CUDA-like devices: on a CPU the update
    # loops over the parameter tensors (`_default_to_fused_or_foreach`), one launch per tensor per kernel
    t = train_step_time(est, device, amp, optimizer, foreach=not hw.cpu)
    if recompute.macs and est.macs:
        t += forward_time(est, device, amp) * recompute.macs / est.macs
    return t, "per-op"


__all__ = ["step_kernels", "step_time", "train_step_time", "TRAIN_TIME_MODELS", "UPDATE"]
