"""Predicted memory of one forward (inference): weights, input and the activation peak at two levels.

The activations are the liveness engine's (`vitcost.analytic.liveness`): which tensors of the trace are
alive together as eager PyTorch runs the reference modules of `vitcost.nets`, whose forwards keep the
tensors alive that timm's implementations of the same families keep (each net's docstring says where
timm's forward and the paper's reference code differ, and which one it follows; NAT has no timm model).

Two levels, each labelled:

* **live tensors** (`activation_peak_bytes`, `peak_at`): the bytes of the tensors the ops return, what
  a tensor tracker sees (`vitcost.measure.memory.LiveTensorTracker`), LayerNorm's float32 mean and rstd
  included;
* **allocator** (`allocator_peak_bytes`, `allocator_peak_at`): the live tensors plus the scratch buffers a
  kernel allocates and frees inside itself, what the allocator hands out (CUDA's max_memory_allocated;
  on the CPU torch.profiler's memory records). The scratch depends on the kernels, so on the device:
  on the CPU oneDNN's reordered convolution weights and inputs (`liveness.conv_scratch`, by layout, kind
  and thread count), the flash-attention kernel's per-thread buffers (`liveness.flash_scratch`) and a
  kernel's contiguous copy of a strided input; on CUDA only the latter (cuDNN's workspaces and the caching
  allocator's 512-byte rounding are not modelled, and no CUDA measurement checks this level).

Weights and the input are resident before the forward starts and are reported apart: both peaks are what
the forward adds on top of them. Left out: index tensors of relative-position gathers and the few-byte
tensors Python scalars become.

This is the one memory model of a forward: `Estimate.activation_peak_bytes` (compare, the library,
reports), `profile`'s `predicted_mem_bytes` and `predicted_alloc_bytes`, the memory wall, and the forward
of a checkpointed run in a training step (`train_memory`) all read it. No torch here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from vitcost.analytic.liveness import PeakSteps, forward_steps
from vitcost.analytic.registry import family_of
from vitcost.errors import VitcostError
from vitcost.vocab import DEVICES, Kernel

if TYPE_CHECKING:
    from vitcost.analytic.estimate import Estimate


class MemoryPrediction(NamedTuple):
    """Predicted bytes of one forward at one resolution, batch and dtype."""

    attn: str  # math | fused
    weights_bytes: int
    input_bytes: int
    activation_peak_bytes: int  # live tensors: peak bytes the forward's tensors hold on top of weights and input
    peak_at: str  # the step where the live-tensor peak is reached ("blocks.3 softmax")
    # attention-score bytes this forward stores with its kernel, all layers summed (0 for a fused kernel,
    # whose scores stay on chip); `Estimate.attn_matrix_bytes` is the scores as if materialised, any kernel
    stored_score_bytes: int
    stored_score_peak_bytes: int  # the largest single layer's stored score tensor
    allocator_peak_bytes: int = 0  # allocator level: the live tensors plus the kernels' scratch buffers
    allocator_peak_at: str = ""  # the step where the allocator-level peak is reached
    device: str = "cpu"  # the kernels whose scratch buffers the allocator level counts (cpu | cuda)

    @property
    def total_bytes(self) -> int:
        """Everything resident at the inference peak: weights, input and activations."""
        return self.weights_bytes + self.input_bytes + self.activation_peak_bytes


def activation_steps(est: Estimate, attn: Kernel = Kernel.math, device: str = "cpu", threads: int = 1) -> PeakSteps:
    """Live activation bytes at every step of the forward (`liveness.forward_steps` over the estimate's trace,
    its copies included), and the allocator level with the scratch buffers of `device`'s kernels (`threads`:
    the CPU kernels' thread count). Kept on the estimate: a caller must not change the record."""
    key = ("activation_steps", attn.fused, device, threads)
    if key not in est.memo:
        family = family_of(est.spec)
        est.memo[key] = forward_steps(est.trace or est.ops, est.bytes_per_elem, attn.fused, PeakSteps(device, threads),
                                      est.batch, family.lists, family.attention)
    return est.memo[key]


def activation_peak(est: Estimate, attn: Kernel = Kernel.math) -> tuple[int, str]:
    """Peak activation bytes of the forward and the step where it is reached (see the module docstring)."""
    peak = activation_steps(est, attn)
    return peak.bytes, peak.where


# ---------------------------------------------------------------------------------------------
# The prediction


def predict_memory(est: Estimate, attn: Kernel | None = None, device: str = "cpu",
                   threads: int = 1) -> MemoryPrediction:
    """Predicted memory of the forward described by `est` with attention kernel `attn` (math | sdpa |
    flash | efficient: the last three are fused kernels; default: the estimate's own kernel), at both
    levels; the allocator level counts the scratch buffers of `device`'s kernels (cpu | cuda) run with
    `threads` CPU threads."""
    kernel = est.attn if attn is None else attn
    if device not in DEVICES:
        raise VitcostError(f"unknown device {device!r} for the memory prediction; choose from {', '.join(DEVICES)}.")
    est.require_single_width()
    e = est.bytes_per_elem
    weights = est.params * e
    inp = est.input_elems * e
    steps = activation_steps(est, kernel, device, max(1, threads))
    # a fused kernel keeps the attention calls' scores on chip; a softmax of its own stores them in any case
    mat = [op.cost.attn for op in est.ops if op.cost.attn and (not kernel.fused or op.kind == "softmax")]
    return MemoryPrediction("fused" if kernel.fused else "math", weights, inp, steps.bytes, steps.where, sum(mat) * e,
                            max(mat, default=0) * e, steps.alloc_bytes, steps.alloc_where, device)


__all__ = ["MemoryPrediction", "PeakSteps", "predict_memory", "activation_peak", "activation_steps"]
