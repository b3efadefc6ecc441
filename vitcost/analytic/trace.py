"""Per-op cost primitives. Each formula is a tiny function of shapes, stated where it is applied,
and works on ints (exact counts) or sympy symbols (the symbolic expression).

A `Trace` collects the ops of one forward pass. `rows` is the number of token rows a layer sees,
batch included. Which tensors are alive together is the memory model's business
(`vitcost.analytic.memory`), not the trace's; but the walker states what it knows about the reference
module and the memory model needs: the block each op runs in (`Trace.block`), where an op's input comes
from when it is not the previous op's output, and facts such as "this pool is a max pool" (`Trace.note`,
`cost.TAGS`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from vitcost.analytic.cost import NO_MEM, TAGS, AttnCall, BlockMark, Cost, LinearAttnCall, Mem, Op
from vitcost.analytic.ints import conv_out
from vitcost.errors import VitcostError

_new = tuple.__new__
_NO_TAGS: frozenset[str] = frozenset()
_ZERO = Cost()


class Trace:
    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.ops: list[Op] = []
        self.mark: BlockMark | None = None  # the block the next ops run in

    @contextmanager
    def block(self, prefix: str, stage: str = "", inp: Any = 0) -> Iterator[None]:
        """The ops recorded inside run in the block `prefix` of stage `stage`, on an input of `inp` elements
        (see `cost.BlockMark`)."""
        outer, self.mark = self.mark, BlockMark(prefix, stage, inp)
        try:
            yield
        finally:
            self.mark = outer

    @contextmanager
    def scope(self, name: str) -> Iterator[str]:
        """The ops recorded inside run in one call of a plain function (not a module) named `name`, whose
        arguments and locals are referenced until it returns, as a module's are (`cost.Mem.scope`). Yields the
        scope's name (unique in the trace), which `note(keep=...)` takes."""
        start = len(self.ops)
        full = f"{name}#{start}"
        yield full
        for i in range(start, len(self.ops)):
            op = self.ops[i]
            self.ops[i] = _new(Op, (*op[:10], op.mem._replace(scope=full)))

    def note(self, *tags: str, src: tuple[str, ...] = (), **mem: Any) -> None:
        """Add facts to the last op recorded: `tags` (keys of `cost.TAGS`), when its input is not the
        previous op's output its producers (`key` of each, or "copy"), and memory facts of the reference
        module (fields of `cost.Mem`: keep, inplace, reads, temp, scratch)."""
        if not TAGS.keys() >= set(tags):
            raise VitcostError(f"unknown op tags {sorted(set(tags) - TAGS.keys())}; see cost.TAGS.")
        op = self.ops[-1]  # (path, kind, role, cost, out, inp, call, block, src, tags, mem), rebuilt without _replace
        facts = op.mem._replace(**mem) if mem else op.mem
        self.ops[-1] = _new(Op, (*op[:8], src or op.src, op.tags | frozenset(tags) if tags else op.tags, facts))

    def key(self, back: int = 1) -> str:
        """The key ("path#kind") of the `back`-th last op that is not a parameter table or a copy."""
        for op in reversed(self.ops):
            if op.kind not in ("param", "copy"):
                back -= 1
                if not back:
                    return op_key(op)
        raise VitcostError("the trace has no such op.")

    def _add(self, path: str, kind: str, role: str, cost: Cost, out: Any, inp: Any, call: AttnCall | None = None
             ) -> None:
        # tuple.__new__ directly: a walk records thousands of ops, and Op's generated __new__ only re-packs
        self.ops.append(_new(Op, (path, kind, role, cost, out, inp, call, self.mark, (), _NO_TAGS, NO_MEM)))

    def linear(self, path: str, rows: Any, fin: int, fout: int, *, role: str, bias: bool = True) -> Any:
        """y = x W^T + b. x: [rows, fin] @ W^T: [fin, fout] -> [rows, fout]: rows*fin*fout MACs."""
        out = rows * fout
        # Cost(macs=rows*fin*fout, eltwise=out if bias else 0, params=fin*fout + (fout if bias else 0)),
        # positionally: the walkers' most frequent op
        cost = _new(Cost, (rows * fin * fout, 0, 0, 0, out if bias else 0, fin * fout + (fout if bias else 0), 0, 0))
        self.ops.append(_new(Op, (path, "linear", role, cost, out, rows * fin, None, self.mark, (), _NO_TAGS, NO_MEM)))
        return out

    def conv(self, path: str, n: Any, cin: int, cout: int, h: Any, w: Any, *, kernel: int, stride: int,
             pad: int, groups: int = 1, bias: bool = True, role: str) -> tuple[Any, Any]:
        """2-D conv of n images [n, cin, h, w] -> [n, cout, ho, wo]:
        n*ho*wo*cout*(cin/groups)*k*k MACs (the bias add is elementwise, not a MAC)."""
        ho, wo = conv_out(h, kernel, stride, pad), conv_out(w, kernel, stride, pad)
        out = n * cout * ho * wo
        cost = Cost(macs=out * (cin // groups) * kernel * kernel, eltwise=out if bias else 0,
                    params=cout * (cin // groups) * kernel * kernel + (cout if bias else 0))
        self._add(path, "conv", role, cost, out, n * cin * h * w)
        return ho, wo

    def conv3d(self, path: str, n: Any, cin: int, cout: int, size: tuple[Any, Any, Any], *,
               kernel: tuple[int, int, int], stride: tuple[int, int, int], pad: tuple[int, int, int],
               groups: int = 1, bias: bool = True, role: str) -> tuple[Any, Any, Any]:
        """3-D conv of n clips [n, cin, t, h, w] -> [n, cout, to, ho, wo], kernel kt x kh x kw:
        n*to*ho*wo*cout*(cin/groups)*kt*kh*kw MACs (the bias add is elementwise, not a MAC)."""
        outs = tuple(conv_out(s, k, st, p) for s, k, st, p in zip(size, kernel, stride, pad))
        taps = (cin // groups) * kernel[0] * kernel[1] * kernel[2]
        out = n * cout * outs[0] * outs[1] * outs[2]
        cost = Cost(macs=out * taps, eltwise=out if bias else 0, params=cout * taps + (cout if bias else 0))
        self._add(path, "conv", role, cost, out, n * cin * size[0] * size[1] * size[2])
        return outs

    def norm(self, path: str, rows: Any, dim: int, *, role: str = "norm") -> None:
        """Affine LayerNorm over the last dim: rows*dim elements, 2*dim params."""
        elems = rows * dim  # Cost(norm=elems, params=2 * dim), positionally
        self.ops.append(_new(Op, (path, "layer_norm", role, _new(Cost, (0, elems, 0, 0, 0, 2 * dim, 0, 0)), elems,
                                  elems, None, self.mark, (), _NO_TAGS, NO_MEM)))

    def batch_norm(self, path: str, elems: Any, channels: int, *, role: str = "norm") -> None:
        """Eval-mode affine BatchNorm of `elems` elements over `channels` channels: the running statistics
        fold into a per-channel scale and shift; 2*channels params (the statistics are buffers)."""
        self._add(path, "batch_norm", role, Cost(bn=elems, params=2 * channels), elems, elems)

    def gelu(self, path: str, elems: Any, *, role: str = "mlp") -> None:
        self._add(path, "gelu", role, Cost(act=elems), elems, elems)

    def eltwise(self, path: str, elems: Any, *, kind: str = "add", role: str = "other", inp: Any = None,
                out: Any = None) -> None:
        """An add / scale / mask / pooling step of `elems` elementwise ops (a pooling window's taps
        count one each); `out` defaults to `elems` output elements and `inp` to 2 operands of that size."""
        out = elems if out is None else out  # Cost(eltwise=elems), positionally
        self.ops.append(_new(Op, (path, kind, role, _new(Cost, (0, 0, 0, 0, elems, 0, 0, 0)), out,
                                  2 * out if inp is None else inp, None, self.mark, (), _NO_TAGS, NO_MEM)))

    def matmul(self, path: str, batch: Any, m: Any, k: Any, n: Any, *, role: str = "scores") -> Any:
        """A batched product of two activations, [batch, m, k] @ [batch, k, n]: batch*m*k*n MACs, no
        parameters. Returns the output elements batch*m*n."""
        out = batch * m * n
        self._add(path, "matmul", role, Cost(macs=batch * m * k * n), out, batch * (m * k + k * n))
        return out

    def softmax(self, path: str, elems: Any, *, role: str = "scores") -> None:
        """A softmax over `elems` attention scores outside an attention call (EViT's class-token scores):
        materialised whatever the attention kernel."""
        self._add(path, "softmax", role, Cost(softmax=elems, attn=elems), elems, elems)

    def copy(self, path: str, elems: Any, what: str, *, view: bool = False, **mem: Any) -> str:
        """A tensor of `elems` elements made by moving data only (a pad, a roll, a window partition or reverse,
        a crop, a copy to another layout), in the module `path`; `view`: it allocates nothing (a view of its
        input, the same storage). No arithmetic, so no cost: only the memory model reads it (`liveness`);
        an estimate's `ops` leave it out (`Estimate.trace` has it). `mem`: further `cost.Mem` facts. Returns
        its key."""
        facts = Mem(what=what, inplace=view, **mem)
        self.ops.append(_new(Op, (path, "copy", "other", _ZERO, elems, elems, None, self.mark, (), _NO_TAGS, facts)))
        return op_key(self.ops[-1])

    def param(self, path: str, n: Any, *, role: str = "other") -> None:
        """A parameter tensor used without arithmetic of its own (a table, a token)."""
        self._add(path, "param", role, Cost(params=n), 0, 0)

    def attention(self, path: str, b: Any, heads: int, nq: Any, nk: Any, head_dim: int, *, terms: int = 0,
                  rel: tuple = (), residual: bool = False, rel_t: tuple = (), cls: int = 0) -> Any:
        """One scaled dot-product attention call, recorded as one structured op (see `attention_steps`
        for its parts). Returns the output elements b*h*nq*d."""
        call = AttnCall(b, heads, nq, nk, head_dim, terms, rel, residual, rel_t, cls)
        q, s = call.q, call.scores
        rel_macs = call.grid_rows * call.rel_keys * head_dim if rel else 0  # q R_h^T, q R_w^T (and q R_t^T)
        rel_adds = (3 if rel_t else 2) * call.grid_scores if rel else 0  # the broadcast sum, added to the scores
        grid_q = call.grid_rows * head_dim
        # the sum of `attention_steps(call)`, in closed form (a test holds them equal)
        cost = Cost(macs=2 * s * head_dim + rel_macs, softmax=s, attn=s,
                    eltwise=q + terms * s + rel_adds + (grid_q if residual else 0))
        self._add(path, "attention", "scores", cost, q, q + 2 * call.kv, call)
        return q

    def linear_attention(self, path: str, b: Any, heads: int, n: Any, head_dim: int) -> Any:
        """One linear-attention call (Katharopoulos et al. 2020) over n tokens, recorded as one structured
        op (see `linear_attention_steps` for its parts): B'*h*N*d*(2d + 1) MACs, no score matrix
        (`attn` = 0). Returns the output elements b*h*n*d."""
        call = LinearAttnCall(b, heads, n, head_dim)
        q = call.q
        # the sum of `linear_attention_steps(call)`, in closed form (a test holds them equal)
        cost = Cost(macs=q * (2 * head_dim + 1), eltwise=6 * q + call.rows)
        self._add(path, "linear_attention", "scores", cost, q, 3 * q, call)
        return q


def blocks(ops: Sequence[Op]) -> list[BlockMark]:
    """The blocks of a trace in order, as their walker marked them (`Trace.block`)."""
    return list(dict.fromkeys(op.block for op in ops if op.block is not None))


def op_key(op: Op) -> str:
    """"path#kind": names one op of a trace (a module may run several ops of different kinds); a copy's
    "path#copy:what"."""
    return f"{op.path}#{op.kind}:{op.mem.what}" if op.mem.what else f"{op.path}#{op.kind}"


class Step(NamedTuple):
    """One part of an attention call."""

    name: str
    cost: Cost
    inp: Any  # input elements read
    out: Any  # output elements written


def attention_steps(a: AttnCall) -> list[Step]:
    """The parts of attention on the math path, in order (Vaswani et al. 2017):

    scale    q * d**-0.5                                                    q elements
    qk       q: [B', h, Nq, d] @ k^T: [B', h, d, Nkv] -> [B', h, Nq, Nkv]   B'*h*Nq*Nkv*d MACs
    rel_h    q: [B'*h*qh, qw, d] @ R_h^T: [.., d, kh] -> [B'*h*qh, qw, kh]  B'*h*Nq*kh*d MACs  (MViTv2)
    rel_w    q: [B'*h*qw, qh, d] @ R_w^T: [.., d, kw] -> [B'*h*qw, qh, kw]  B'*h*Nq*kw*d MACs
    rel_t    q: [qt, B'*h*qh*qw, d] @ R_t^T: [qt, d, kt] -> [.., kt]          B'*h*Nq*kt*d MACs  (on a clip)
    rel_sum  rel_h + rel_w (+ rel_t) broadcast to a [B', h, Nq, Nkv] term; rel_add: scores + term
    term     scores + bias / mask, once per additive term
    softmax  over the scores
    av       scores: [B', h, Nq, Nkv] @ v: [B', h, Nkv, d] -> [B', h, Nq, d] B'*h*Nq*Nkv*d MACs
    residual output + q (residual pooling)
    With a class token (`cls`) the relative positions and the residual pooling take the grid's queries and
    keys only (Nq - 1, Nkv - 1)."""
    bh, d = a.batch * a.heads, a.head_dim
    q, kv, s = a.q, a.kv, a.scores
    steps = [Step("scale", Cost(eltwise=q), q, q),
             Step("qk", Cost(macs=s * d, attn=s), q + kv, s)]
    if a.rel:
        steps += _rel_steps(a, bh, d)
    steps += [Step("term", Cost(eltwise=s), 2 * s, s)] * a.terms
    steps += [Step("softmax", Cost(softmax=s), s, s),
              Step("av", Cost(macs=s * d), s + kv, q)]
    if a.residual:
        gq = a.grid_rows * d
        steps.append(Step("residual", Cost(eltwise=gq), 2 * gq, gq))
    return steps


def _rel_steps(a: AttnCall, bh: Any, d: int) -> list[Step]:
    """The decomposed relative positions of `attention_steps`: one product per axis, their broadcast sum,
    its add to the scores."""
    qh, qw, kh, kw = a.rel
    rows, s = a.grid_rows, a.grid_scores  # B'*h*qh*qw query rows on an image (qt*qh*qw on a clip)
    rel_h, rel_w = rows * kh, rows * kw
    # each product reads q and a table broadcast over the B'*h batch (a copy of B'*h*q?*k?*d)
    steps = [Step("rel_h", Cost(macs=rel_h * d), a.q + bh * qh * d * kh, rel_h),
             Step("rel_w", Cost(macs=rel_w * d), a.q + bh * qw * d * kw, rel_w)]
    terms = rel_h + rel_w
    if a.rel_t:
        qt, kt = a.rel_t
        rel_t = rows * kt
        steps.append(Step("rel_t", Cost(macs=rel_t * d), a.q + bh * qt * d * kt, rel_t))
        terms += rel_t
    return steps + [Step("rel_sum", Cost(eltwise=(2 if a.rel_t else 1) * s), terms, s),
                    Step("rel_add", Cost(eltwise=s), 2 * s, s)]


def linear_attention_steps(a: LinearAttnCall) -> list[Step]:
    """The parts of linear attention (Katharopoulos et al. 2020, Eq. 5-6), in the order nets.vit runs
    them; with phi(x) = elu(x) + 1 and q, k, v: [B', h, N, d]:

    phi_k      elu(k) + 1                                                    2 per element
    kv         phi(k)^T: [B', h, d, N] @ v: [B', h, N, d] -> [B', h, d, d]   B'*h*N*d*d MACs
    k_sum      sum over n of phi(k): [B', h, N, d] -> [B', h, d]             1 per element
    phi_q      elu(q) + 1                                                    2 per element
    num        phi(q): [B', h, N, d] @ kv: [B', h, d, d] -> [B', h, N, d]    B'*h*N*d*d MACs
    den        phi(q): [B', h, N, d] @ k_sum: [B', h, d, 1] -> [B', h, N, 1] B'*h*N*d MACs
    eps        den + eps                                                     1 per row
    normalise  num / den                                                     1 per output element
    There is no fused kernel: every step runs on its own, on either attention path."""
    q, s, ks, r = a.q, a.state, a.k_sum, a.rows
    d = a.head_dim
    return [Step("phi_k", Cost(eltwise=2 * q), q, q),
            Step("kv", Cost(macs=q * d), 2 * q, s),
            Step("k_sum", Cost(eltwise=q), q, ks),
            Step("phi_q", Cost(eltwise=2 * q), q, q),
            Step("num", Cost(macs=q * d), q + s, q),
            Step("den", Cost(macs=q), q + ks, r),
            Step("eps", Cost(eltwise=r), r, r),
            Step("normalise", Cost(eltwise=q), q + r, q)]


def call_steps(call: AttnCall | LinearAttnCall) -> list[Step]:
    """The steps of an attention record of either kind."""
    return linear_attention_steps(call) if isinstance(call, LinearAttnCall) else attention_steps(call)
