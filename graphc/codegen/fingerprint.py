"""A hash of everything a generated module's text depends on, so that a second
`gc.compile` of the same graph (in this process or the next) imports the module it
wrote before instead of differentiating and lowering again.

The key covers the graph (every node: its op and attributes, shape, dtype, name, model line
and scope; the outputs, the adjoint records, the in-place and running-average maps),
the target, the dtype, the BLAS (numba target), and the versions of graphc's own code
(every file of the package, by content) and of SymPy (its simplification and printing
shape the text). That is more than the text shows (a model line moved by an edit gives
a new key, and the same text is written again): a key may miss, never mislead.
Anything it cannot describe exactly (a user's Python function as a custom gradient
rule, an attribute of an unknown type) makes the graph uncacheable: `key` returns None
and the module is generated as before.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import types
from pathlib import Path

import sympy as sp

from ..graph.ir import Graph, Node
from ..graph.ops import Op

_PACKAGE = Path(__file__).resolve().parent.parent   # graphc/: every file of the package
_NOT_PART_OF_THE_TEXT = ("_interned", "_origin", "_scope", "_code", "traced")   # tracing state


class Uncacheable(Exception):
    """Something in the graph that the key cannot describe exactly."""


def key(graph: Graph, wrt_names, target, dtype, blas=None) -> str | None:
    """The hex digest naming the module `generate` would write, or None."""
    try:
        parts = [package_version(), sp.__version__, target, dtype, blas, tuple(wrt_names),
                 _graph_state(graph), tuple(_node_state(n) for n in graph.nodes)]
    except Uncacheable:
        return None
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """A digest of graphc's own files (code and templates): any edit makes a new key."""
    digest = hashlib.sha256()
    for path in sorted(p for p in _PACKAGE.rglob("*") if p.suffix in (".py", ".j2")):
        digest.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _graph_state(graph):
    fields = sorted((k, v) for k, v in vars(graph).items() if k not in _NOT_PART_OF_THE_TEXT)
    return tuple((k, _value(v)) for k, v in fields)


def _node_state(node):
    # the common fields described directly: a 10,000-node graph is keyed in a few tens of ms
    where = node.where and (node.where.file, node.where.line)
    shape = tuple(d if type(d) is int else _value(d) for d in node.shape)
    return (_op(node.op), node.attrs and _value(node.attrs), tuple(i.index for i in node.inputs), shape,
            node.dtype, node.name, where, node.origin and _value(node.origin), node.scope)


@functools.lru_cache(maxsize=None)
def _op(op: Op):
    """An op by what code generation reads of it. An elementwise op is data (its formulas);
    any other op is graphc's own, whose rules the package digest covers."""
    if op.elementwise:
        return ("elementwise", op.name, op.n_inputs, _value(op.params), _value(op.formula),
                _value(op.stable), _value(op.explicit_partials), op.nondiff, op.domain, op.gate, op.symbol)
    for rule in (op.vjp, op.shape_rule):
        if rule is not None and getattr(rule, "__module__", "").split(".")[0] != "graphc":
            raise Uncacheable(f"op {op.name} declared outside graphc")
    return (op.kind, op.name, op.n_inputs, _value(op.params), op.nondiff, op.domain, op.gate, op.symbol)


def _value(v):
    """An exact, deterministic description of one value (Uncacheable if there is none)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return (type(v).__name__, repr(v))
    if isinstance(v, Node):
        return ("node", v.index)
    if isinstance(v, Graph):   # a scan's step graph, described as a graph is
        return ("graph", _graph_state(v), tuple(_node_state(n) for n in v.nodes))
    if isinstance(v, sp.Basic):
        return ("sympy", sp.srepr(v))
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_value(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((_value(k), _value(x)) for k, x in v.items()))
    if isinstance(v, slice):
        return ("slice", _value(v.start), _value(v.stop), _value(v.step))
    if v is Ellipsis:
        return ("...",)
    if dataclasses.is_dataclass(v) and not isinstance(v, type) and not isinstance(v, Op):
        return (type(v).__name__, _value(tuple(getattr(v, f.name) for f in dataclasses.fields(v))))
    if isinstance(v, types.FunctionType) and _is_graphcs_own(v):
        return ("function", v.__module__, v.__qualname__)
    raise Uncacheable(type(v).__name__)


def _is_graphcs_own(fn):
    """A top-level function of graphc: its code is in the package digest and it captures
    nothing (a lambda or a closure could hold values the digest does not see)."""
    return (fn.__module__.split(".")[0] == "graphc" and fn.__closure__ is None
            and "<" not in fn.__qualname__)
