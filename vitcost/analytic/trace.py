"""Per-op cost primitives. Each formula is a tiny function of shapes, stated where it is applied,
and works on ints (exact counts) or sympy symbols (the symbolic expression).

A `Trace` collects the ops of one forward pass. `rows` is the number of token rows a layer sees,
batch included; `held` is the activation elements kept alive by the caller during the op (the
residual stream, saved shortcuts), so that `Op.live` can give the activation peak.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.cost import Cost, Op
from vitcost.analytic.ints import conv_out


class Trace:
    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.ops: list[Op] = []

    def _add(self, path: str, kind: str, role: str, cost: Cost, out: Any, inp: Any, held: Any) -> None:
        self.ops.append(Op(path, kind, role, cost, out, held + inp + out, inp, held))

    def linear(self, path: str, rows: Any, fin: int, fout: int, *, role: str, bias: bool = True,
               held: Any = 0) -> Any:
        """y = x W^T + b. x: [rows, fin] @ W^T: [fin, fout] -> [rows, fout]: rows*fin*fout MACs."""
        out = rows * fout
        cost = Cost(macs=rows * fin * fout, eltwise=out if bias else 0, params=fin * fout + (fout if bias else 0))
        self._add(path, "linear", role, cost, out, rows * fin, held)
        return out

    def conv(self, path: str, n: Any, cin: int, cout: int, h: Any, w: Any, *, kernel: int, stride: int,
             pad: int, groups: int = 1, bias: bool = True, role: str, held: Any = 0) -> tuple[Any, Any]:
        """2-D conv of n images [n, cin, h, w] -> [n, cout, ho, wo]:
        n*ho*wo*cout*(cin/groups)*k*k MACs (the bias add is elementwise, not a MAC)."""
        ho, wo = conv_out(h, kernel, stride, pad), conv_out(w, kernel, stride, pad)
        out = n * cout * ho * wo
        cost = Cost(macs=out * (cin // groups) * kernel * kernel, eltwise=out if bias else 0,
                    params=cout * (cin // groups) * kernel * kernel + (cout if bias else 0))
        self._add(path, "conv", role, cost, out, n * cin * h * w, held)
        return ho, wo

    def norm(self, path: str, rows: Any, dim: int, *, role: str = "norm", held: Any = 0) -> None:
        """Affine LayerNorm over the last dim: rows*dim elements, 2*dim params."""
        self._add(path, "layer_norm", role, Cost(norm=rows * dim, params=2 * dim), rows * dim, rows * dim, held)

    def gelu(self, path: str, elems: Any, *, role: str = "mlp", held: Any = 0) -> None:
        self._add(path, "gelu", role, Cost(act=elems), elems, elems, held)

    def eltwise(self, path: str, elems: Any, *, kind: str = "add", role: str = "other", held: Any = 0,
                inp: Any = None, out: Any = None) -> None:
        """An add / scale / mask / pooling step of `elems` elementwise ops (a pooling window's taps
        count one each); `out` defaults to `elems` output elements and `inp` to 2 operands of that size."""
        out = elems if out is None else out
        self._add(path, kind, role, Cost(eltwise=elems), out, 2 * out if inp is None else inp, held)

    def param(self, path: str, n: Any, *, role: str = "other") -> None:
        """A parameter tensor used without arithmetic of its own (a table, a token)."""
        self._add(path, "param", role, Cost(params=n), 0, 0, 0)

    def matmul(self, path: str, batch: Any, m: Any, k: Any, n: Any, *, role: str = "scores", held: Any = 0,
               scores: Any = 0) -> Any:
        """Batched [batch, m, k] @ [batch, k, n] -> [batch, m, n]: batch*m*k*n MACs."""
        out = batch * m * n
        self._add(path, "matmul", role, Cost(macs=batch * m * k * n, attn=scores), out,
                  batch * (m * k + k * n), held)
        return out

    def attention(self, path: str, b: Any, heads: int, nq: Any, nk: Any, head_dim: int, *, held: Any = 0,
                  score_terms: int = 0, extra: Any = None) -> Any:
        """Scaled dot-product attention, scores materialised (the math path).

        q: [b, h, nq, d] @ k^T: [b, h, d, nk] -> scores [b, h, nq, nk]: b*h*nq*nk*d MACs
        `score_terms` elementwise adds on the scores (relative position bias, shift mask, ...)
        softmax over scores: b*h*nq*nk elements
        scores [b, h, nq, nk] @ v: [b, h, nk, d] -> [b, h, nq, d]: b*h*nq*nk*d MACs
        `extra(scores_elems, held)` may add ops on the scores before the softmax (relative positions).
        Returns the output elements b*h*nq*d."""
        bh = b * heads
        q, kv = bh * nq * head_dim, bh * nk * head_dim
        s = bh * nq * nk
        self.eltwise(path, q, kind="scale", held=held + 2 * kv, inp=q)  # q * head_dim**-0.5
        self.matmul(path, bh, nq, head_dim, nk, held=held + kv, scores=s)
        if extra is not None:
            extra(s, held + q + kv + s)
        for _ in range(score_terms):
            self.eltwise(path, s, held=held + q + kv)
        self._add(path, "softmax", "scores", Cost(softmax=s), s, s, held + q + kv)
        return self.matmul(path, bh, nq, nk, head_dim, held=held + q)
