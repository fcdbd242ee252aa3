"""How a module uses a weight, read from its own code: the products its methods form with ``self.<weight>``.

Routing needs to know, for a parameter that is not an ``nn.Linear`` / ``Conv1D`` weight, whether it is a matrix
the module multiplies by (a hidden projection: Muon) and in which orientation, and for a fused projection how
its output is cut. Names and shapes cannot say that; the module's methods do, so they are parsed (``ast``, once
per class) and the products with ``self.W`` read:

* ``x @ self.W``, ``torch.bmm(x, self.W)``, ``torch.baddbmm(b, x, self.W)``, ``torch.matmul(x, self.W)``: ``W`` is
  stored ``(…, in, out)`` (``transposed``); with ``self.W.T`` / ``.mT`` / ``.transpose(…)`` or ``F.linear(x,
  self.W)`` it is ``(…, out, in)``. A 3-D ``W`` in a batched product, or indexed ``self.W[i]``, is a stack of
  matrices (MoE experts, per-head blocks), one matrix per leading index.
* ``torch.einsum(spec, …, self.W)``: each axis of ``W`` is *out* (kept in the result only), *in* (summed) or
  *batch* (kept and shared with another operand); ``W`` is a matrix when its axes are ``in | out…`` or
  ``out | in…`` after leading batch axes (XLNet's ``hnd`` projections).
* a fused output: ``self.W(x).chunk(k, …)`` / ``torch.chunk(…, k, …)`` or ``y = self.W(x)`` then
  ``y.chunk(k, …)`` (contiguous blocks), ``y[..., ::2]`` (GPT-OSS's alternating columns).

Anything else (elementwise use, an index table, a product the parser does not recognise) gives ``None``: the
caller keeps its default and says why.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from dataclasses import dataclass

from torch import nn

_RIGHT = {"bmm": 1, "matmul": 1, "mm": 1, "baddbmm": 2, "addmm": 2}
_TRANSPOSES = ("T", "mT")
_CASTS = ("float", "half", "bfloat16", "double", "to", "type", "contiguous", "type_as")


@dataclass(frozen=True)
class Use:
    transposed: bool  # the matrix is stored (…, in, out)
    stacked: bool  # a leading axis indexes separate matrices (experts, heads)
    how: str  # the product, for the routing report


@functools.lru_cache(maxsize=512)
def _tree(cls: type) -> ast.AST | None:
    if cls in (nn.Module, nn.Linear) or cls.__module__.startswith("torch."):
        return None
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return None


def _self_attr(node) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _operand(node, name: str) -> tuple[bool, bool] | None:
    """``(flipped, indexed)`` when ``node`` is ``self.<name>``, possibly transposed (``.T``, ``.mT``,
    ``.transpose(…)``) and/or indexed (``self.<name>[i]``); None when it is not."""
    indexed = False
    while (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _CASTS
    ):  # self.W.float(), self.W.to(x.dtype)
        node = node.func.value
    if isinstance(node, ast.Subscript):
        node, indexed = node.value, True
    flipped = False
    if isinstance(node, ast.Attribute) and node.attr in _TRANSPOSES:
        node, flipped = node.value, True
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("transpose", "t"):
        node, flipped = node.func.value, True
    if isinstance(node, ast.Subscript):
        node, indexed = node.value, True
    return (flipped, indexed) if _self_attr(node) == name else None


def _func_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")


def _einsum(call: ast.Call, name: str, ndim: int) -> Use | None:
    if not call.args or not isinstance(call.args[0], ast.Constant) or not isinstance(call.args[0].value, str):
        return None
    spec = call.args[0].value.replace(" ", "")
    if "->" not in spec or "." in spec:
        return None
    inputs, output = spec.split("->")
    subs = inputs.split(",")
    ops = call.args[1:]
    idx = next((i for i, op in enumerate(ops) if _self_attr(op) == name), None)
    if idx is None or idx >= len(subs) or len(subs[idx]) != ndim:
        return None
    others = "".join(s for i, s in enumerate(subs) if i != idx)
    roles = ["batch" if c in output and c in others else "out" if c in output else "in" for c in subs[idx]]
    lead = 0
    while lead < len(roles) and roles[lead] == "batch":
        lead += 1
    rest = roles[lead:]
    if lead > 1 or len(rest) < 2 or "batch" in rest or rest[1:] != [rest[1]] * (len(rest) - 1) or rest[0] == rest[1]:
        return None
    return Use(rest[0] == "in", lead == 1, f"einsum {spec!r}")


def use_of(mod: nn.Module, name: str, ndim: int) -> Use | None:
    """How ``type(mod)``'s methods multiply by ``self.<name>`` (a ``ndim``-D parameter), or None."""
    tree = _tree(type(mod))
    if tree is None:
        return None
    cls = type(mod).__name__
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            for side, operand in ((1, node.right), (0, node.left)):
                hit = _operand(operand, name)
                if hit is not None:
                    flipped, indexed = hit
                    return Use((side == 1) != flipped, indexed or ndim == 3, f"{cls}: {'x @ W' if side else 'W @ x'}")
        if isinstance(node, ast.Call):
            fn = _func_name(node)
            if fn == "einsum":
                use = _einsum(node, name, ndim)
                if use is not None:
                    return Use(use.transposed, use.stacked, f"{cls}: {use.how}")
            elif fn in _RIGHT and len(node.args) > _RIGHT[fn]:
                hit = _operand(node.args[_RIGHT[fn]], name)
                if hit is not None:
                    return Use(not hit[0], hit[1] or ndim == 3, f"{cls}: {fn}(x, W)")
            elif fn == "linear" and len(node.args) > 1:
                hit = _operand(node.args[1], name)
                if hit is not None:
                    return Use(hit[0], hit[1], f"{cls}: linear(x, W)")
    return None


def _int(node) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _int(node.operand)
        return None if v is None else -v
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, int) else None


def _chunks(call: ast.Call) -> int | None:
    """k of ``y.chunk(k, dim=-1)`` / ``torch.chunk(y, k, dim=-1)`` (the output's feature axis only)."""
    if _func_name(call) != "chunk":
        return None
    args = call.args if _is_torch(call) else [call.func.value] + call.args
    dims = [kw.value for kw in call.keywords if kw.arg == "dim"] + args[2:3]
    k = _int(args[1]) if len(args) > 1 else None
    return k if k and dims and _int(dims[0]) == -1 else None


def _is_torch(call: ast.Call) -> bool:
    return (
        isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and call.func.value.id == "torch"
    )


def _target(call: ast.Call) -> ast.AST:
    return call.args[0] if _is_torch(call) and call.args else call.func.value


def _made_by(node, name: str, assigned: dict) -> bool:
    """Whether ``node`` is ``self.<name>(…)``, ``self.<name>[…] @ …``, ``… @ self.<name>``, or a variable assigned so."""
    if isinstance(node, ast.Name):
        return assigned.get(node.id, False)
    if isinstance(node, ast.Call) and _self_attr(node.func) == name:
        return True
    if isinstance(node, ast.Call) and _func_name(node) in _RIGHT and len(node.args) > _RIGHT[_func_name(node)]:
        return _operand(node.args[_RIGHT[_func_name(node)]], name) is not None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return _operand(node.right, name) is not None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):  # + bias
        return _made_by(node.left, name, assigned) or _made_by(node.right, name, assigned)
    return False


def output_blocks(mod: nn.Module, name: str) -> tuple[str, int] | None:
    """How ``type(mod)``'s methods cut the output of ``self.<name>`` (a child module or a weight it multiplies by):
    ``("contiguous", k)`` for ``.chunk(k, …)``, ``("interleaved", 2)`` for ``[..., ::2]``; None when uncut."""
    tree = _tree(type(mod))
    if tree is None:
        return None
    assigned: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            var = node.targets[0].id  # a name once bound to the output keeps counting (branches, reuse)
            assigned[var] = assigned.get(var, False) or _made_by(node.value, name, assigned)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            k = _chunks(node)
            if k and _made_by(_target(node), name, assigned):
                return "contiguous", k
        if isinstance(node, ast.Subscript) and _made_by(node.value, name, assigned):
            sl = node.slice.elts[-1] if isinstance(node.slice, ast.Tuple) else node.slice
            if isinstance(sl, ast.Slice) and isinstance(sl.step, ast.Constant) and sl.step.value == 2:
                return "interleaved", 2
    return None


__all__ = ["Use", "output_blocks", "use_of"]
