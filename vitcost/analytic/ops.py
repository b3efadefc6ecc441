"""The op table: one entry per op kind the walkers record (`Op.kind`), stating once every rule the
models apply to that kind. The forward cost is the walker's (`Op.cost`, by cost field); the table says
the rest:

    backward  the forward in train mode and the backward's cost vector (`training`), with the rule in words
    saves     what autograd saves for the backward, as tokens `train_memory.step_ops` turns into bytes:
                input        the tensor the op read (its producer's output, or a copy made on the way)
                matmul_input the input, or under autocast its 16-bit copy; and autocast's 16-bit weight copy
                output       the op's own output (ReLU runs in place: the storage the next op reads)
                row_stats    LayerNorm's float32 mean and rstd per row
                channel_stats  train-mode BatchNorm's float32 batch mean and invstd per channel
                index        a max pool's int64 indices (with its input; a mean pool saves nothing)
                attention    the attention call's operands and scores (`train_memory._attention`)
                matmul_operands  a product of two activations' operands (`train_memory._matmul_saves`)
                intermediate a value computed inside the op (SwiGLU's SiLU output)
                order        the int64 indices a top-k keeps
                sources      what a gather or fusion reads (not for top-k's gather of the value rows,
                             whose backward scatters into a zero-filled gradient)
    width     the output's element width under autocast (torch.autocast at 16 bits over fp32 weights):
                matmul  16 bits (linear, conv, attention: autocast's lower-precision list)
                norm    fp32 on CUDA (autocast's fp32 list), its input's width on the CPU
                fp32    always fp32 (a parameter)
                stream  the wider of its input and the residual stream (a residual add)
                input   its input's width
              and an op reading a float32 parameter recorded right before it (`param_operand`: ViT's
              + pos_embed, a layer scale) writes fp32
    grad      the gradient bytes its backward holds: "own" (the gradient at its output and the one it
              gives its input), "through" (handed on as it is: an add, a parameter read by another op), or
              the op's own rule in `train_memory._backward_live` (glu, gather)
    product   reads fp32 weights through autocast's cast (4 bytes read, 2 written, 2 read again)
    time      the time model's class: gemm (a linear; a conv picks conv or depthwise by its depth),
              attention (the call's own kernels), memory (a pass over its bytes), none (no kernel)
    backward_passes  a memory-bound op's backward bytes over its forward's (`train_time`): an
              elementwise op reads x (or y) and dy and writes dx, 3 passes against the forward's 2 (1.5);
              a norm adds the weight gradients' reduction over x and dy (5 passes, 2.5); a residual add
              sums the two gradients meeting at its fork (as many as its forward); a pool hands each
              tap its share (1); a bias add hands dy on and reduces it for the bias (1 of 2: 0.5)

A new op kind is one entry here (and its walker primitive in `trace`); `kind_of` refuses a kind the
table does not have, so no model silently treats it as another. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from vitcost.analytic.cost import Cost, LinearAttnCall, Op
from vitcost.analytic.kernels import FUSED, attention_path
from vitcost.analytic.trace import Step, call_steps
from vitcost.errors import VitcostError
from vitcost.vocab import F32, Kernel

_PRODUCT_OPERANDS = 2  # a product of two activations (or an activation and a table): both get a gradient

Backward = Callable[[Op, Kernel, bool], tuple[Cost, Cost, str]]


def product_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """linear / conv: Y = X W (+ b). dW = X^T dY: the forward's MACs; dX = dY W^T (a transposed conv):
    the forward's MACs again when X needs a gradient; db = sum of dY over the rows: the forward's bias
    elements (its `eltwise`, one per output element with a bias)."""
    macs = op.cost.macs * (2 if grad_input else 1)
    back = Cost(macs=macs, eltwise=op.cost.eltwise)
    return op.cost, back, ("dX + dW" if grad_input else "dW only (input needs no gradient)") + (
        " + db" if op.cost.eltwise else "")


def norm_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """LayerNorm: the gradients of x, scale and shift, per element (NORM_BACKWARD_FLOPS)."""
    return op.cost, Cost(norm=op.cost.norm), "norm backward per element"


def batch_norm_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """Train-mode BatchNorm: batch statistics forward (a norm's cost, not eval mode's folded scale and
    shift) and a norm's backward, per element."""
    elems = op.cost.bn
    return Cost(norm=elems, params=op.cost.params), Cost(norm=elems), "train-mode batch norm, per element"


def gelu_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    return op.cost, Cost(act=op.cost.act), "GELU derivative per element"


def eltwise_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    return op.cost, Cost(eltwise=op.cost.eltwise), "one op per element"


def matmul_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """A product of two activations (EViT's class-token scores, top-k's products): both operands get a
    gradient, dA = dY B^T and dB = A^T dY, twice the forward's MACs."""
    return op.cost, Cost(macs=_PRODUCT_OPERANDS * op.cost.macs), "dA = dY B^T and dB = A^T dY"


def softmax_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """A softmax outside an attention call: its derivative per element (SOFTMAX_BACKWARD_FLOPS)."""
    return op.cost, Cost(softmax=op.cost.softmax), "softmax derivative per element"


def param_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    return op.cost, Cost(), "gradient through the op that reads it"


def step_backward(step: Step) -> Cost:
    """The backward of one attention step: a product gives both operands a gradient (2x its MACs);
    softmax and elementwise steps their per-element backward."""
    c = step.cost
    return Cost(macs=_PRODUCT_OPERANDS * c.macs, softmax=c.softmax, eltwise=c.eltwise)


def attention_backward(op: Op, kernel: Kernel, grad_input: bool) -> tuple[Cost, Cost, str]:
    """Softmax attention: the backward of each of `attention_steps`; a fused kernel recomputes
    S = Q K^T (s*d MACs) and P = exp(S - lse) (2 per score) on top. Linear attention: the backward of
    each of its steps (no fused kernel)."""
    a = op.call
    back = Cost.sum(step_backward(st) for st in call_steps(a))
    if isinstance(a, LinearAttnCall):
        return op.cost, back, "3 products x 2 operands"
    if attention_path(a, kernel, training=True) == FUSED:
        back = back + Cost(macs=a.scores * a.head_dim, eltwise=2 * a.scores)
        return op.cost, back, "fused: 5 score-sized products (QK^T recomputed)"
    return op.cost, back, "math: 4 score-sized products"


class OpKind(NamedTuple):
    """Everything the models know about one op kind (see the module docstring)."""

    kind: str
    backward: Backward
    saves: tuple[str, ...] = ()
    width: str = "input"
    grad: str = "own"
    param_operand: bool = False  # reads a float32 parameter recorded right before it: writes fp32
    product: bool = False
    time: str = "memory"
    backward_passes: float = 1.5


_PRODUCT = {"backward": product_backward, "saves": ("matmul_input",), "width": "matmul", "product": True}
_ATTENTION = {"backward": attention_backward, "saves": ("attention",), "width": "matmul", "time": "attention"}

OPS: dict[str, OpKind] = {k.kind: k for k in (
    OpKind("linear", time="gemm", **_PRODUCT),
    OpKind("conv", time="conv", **_PRODUCT),
    OpKind("attention", **_ATTENTION),
    OpKind("linear_attention", **_ATTENTION),
    OpKind("layer_norm", norm_backward, ("input", "row_stats"), width="norm", backward_passes=2.5),
    OpKind("batch_norm", batch_norm_backward, ("input", "channel_stats"), backward_passes=2.5),
    OpKind("gelu", gelu_backward, ("input",)),
    OpKind("relu", eltwise_backward, ("output",)),
    OpKind("scale", eltwise_backward, ("input",), param_operand=True),  # x * gamma saves x
    OpKind("pool", eltwise_backward, ("input", "index"), backward_passes=1.0),  # a max pool's; a mean pool: none
    OpKind("add", eltwise_backward, width="stream", grad="through", param_operand=True, backward_passes=1.0),
    OpKind("param", param_backward, width="fp32", grad="through", time="none", backward_passes=0.0),
    OpKind("bias", eltwise_backward, grad="through", backward_passes=0.5),  # + cat(q_bias, 0, v_bias) (SwinV2)
    OpKind("bias_gather", eltwise_backward, backward_passes=1.0),  # a relative-position table to [h, N, N]
    OpKind("normalize", eltwise_backward),  # F.normalize of q and k (SwinV2's cosine attention)
    OpKind("matmul", matmul_backward, ("matmul_operands",), width="matmul", time="gemm"),  # two activations
    OpKind("softmax", softmax_backward, ("output",)),  # outside an attention call (EViT's class-token scores)
    OpKind("mul", eltwise_backward),  # q times the softmax scale
    OpKind("rope", eltwise_backward),  # rotary position embedding of q and k (EVA02): fixed tables
    OpKind("glu", eltwise_backward, ("input", "intermediate"), grad="glu"),  # SiLU(gate) * x (SwiGLU)
    OpKind("rank", eltwise_backward),  # EViT: the class token's attention averaged over heads
    OpKind("topk", eltwise_backward, ("order",)),  # the kept indices (int64)
    OpKind("gather", eltwise_backward, ("sources",), grad="gather"),  # rows picked by those indices
    OpKind("fuse", eltwise_backward, ("sources",)),  # EViT: the inattentive tokens fused into one
    OpKind("concat", eltwise_backward, backward_passes=1.0),  # the kept tokens and the fused one
)}


def autocast_width(entry: OpKind, din: int, stream: int, low: int, device: str, after_param: bool) -> int:
    """Bytes per element of an op's output under autocast (`OpKind.width`): `din` its input's, `stream`
    the residual stream's, `low` the 16-bit width, `device` cpu | cuda (autocast's lists differ),
    `after_param`: a float32 parameter was recorded right before it."""
    if entry.param_operand and after_param:
        return F32  # + a float32 table (position embedding) or * a float32 layer scale
    width = entry.width
    if width == "matmul":
        return low
    if width == "norm":
        return F32 if device == "cuda" else din
    if width == "fp32":
        return F32
    if width == "stream":
        return max(din, stream)
    return din


def kind_of(op: Op) -> OpKind:
    """The table entry of `op`'s kind; a kind the table lacks is an error, never a default."""
    try:
        return OPS[op.kind]
    except KeyError:
        raise VitcostError(f"op kind {op.kind!r} (at {op.path or 'the model'}) is not in the op table "
                           f"(vitcost.analytic.ops.OPS).") from None


def saves(op: Op) -> tuple[str, ...]:
    """What `op` saves for its backward (tokens of the module docstring): a pool saves its input and
    indices only when it is a max pool."""
    tokens = kind_of(op).saves
    if op.kind == "pool" and "max_pool" not in op.tags:
        return ()
    return tokens


__all__ = ["OPS", "OpKind", "kind_of", "saves", "autocast_width",
           "step_backward", "product_backward", "attention_backward"]
