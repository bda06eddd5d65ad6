"""The op record, the registry, and `apply`: how every node enters a graph.

One op is one record: its name, how it infers its output shape, its
vector-Jacobian product (VJP), its Jacobian-vector product (JVP, forward mode) and a
NumPy reference. Elementwise ops are declared by a scalar SymPy formula
(elementwise.py) and get their derivatives from SymPy. The rules for a specific op sit
beside its declaration in `primitives.py` or `structural.py`.

`apply` is the one door into a graph. It checks shapes (errors name the graph,
the op, the shapes and the model line), folds constants and drops algebraic
identities (x*1, x+0, the unit seed) before a node is interned, so every later
stage sees a simplified graph.
"""
from __future__ import annotations

import functools
import keyword
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import symbolic
from .ir import GraphError, broadcast_shapes, format_shape, located
from .lazy import sp
from .names import Namer, user_names
from .tensor import Tensor

REGISTRY: dict[str, "Op"] = {}


@dataclass(eq=False)
class Op:
    name: str
    kind: str                                   # input | const | elementwise | structural | alias
    n_inputs: int | None = None                 # None: variadic
    params: tuple = ()                          # ((name, default), ...): static attributes
    formulas: Callable | None = None            # elementwise: () -> its SymPy expressions (see build)
    shape_rule: Callable | None = None          # structural: (attrs, *shapes) -> shape
    vjp: Callable | None = None                 # (g, y, *inputs, **attrs) -> one contribution per input
    jvp: Callable | None = None                 # (tangents, y, *inputs, **attrs) -> y's tangent or None
    ref: Callable | None = None                 # NumPy reference, for tests and evaluation
    symbol: str = ""                            # short label for diagrams and dumps
    gate: str = ""                              # the lecture's words for its backward pattern
    nondiff: tuple = field(default_factory=tuple)  # input positions with no gradient
    shape_only: tuple = ()                      # input positions read for their shape alone
    domain: str | None = None                   # what input 0 must be when it is a graph input
    dtype_rule: Callable | None = None          # (attrs, *input dtypes) -> the result's dtype ("float" or
                                                # "int"); None: float from floats (see node_dtype)
    siblings: bool = False                      # one of the outputs of one computation (a scan's loop),
                                                # which attribute "out" tells apart: autodiff takes their VJP
                                                # at once, and the code computes them in one statement

    def __repr__(self):
        return f"<op {self.name}>"

    @property
    def elementwise(self):
        return self.kind == "elementwise"

    def build(self):
        """(formula, stable, explicit_partials), from `formulas` on the first call: graphc's
        own ops are built when first used, so that `import graphc` imports no SymPy."""
        if "_built" not in self.__dict__:
            self._built = self.formulas() if self.formulas is not None else (None, None, None)
        return self._built

    # elementwise: the formula over ARGS and param symbols; the form printed, where it overflows; rules given
    formula = property(lambda self: self.build()[0])
    stable = property(lambda self: self.build()[1])
    explicit_partials = property(lambda self: self.build()[2])

    def formula_for(self, attrs):
        """The scalar formula with this node's attribute values substituted."""
        return _formula_for(self, attrs)

    def printed_formula(self, attrs):
        """The formula a target prints: the stable form where one is declared."""
        return _formula_for_stable(self, attrs)

    def partials_for(self, attrs, n_inputs):
        return _partials_for(self, attrs, n_inputs)


def _param_symbols(op):
    return {name: sp.Symbol(name, real=True) for name, _ in op.params}


@functools.lru_cache(maxsize=None)
def _formula_for(op, attrs):
    if op is EXPR:
        return dict(attrs)["expr"]
    syms = _param_symbols(op)
    return op.formula.subs({syms[k]: v for k, v in attrs}) if attrs else op.formula


@functools.lru_cache(maxsize=None)
def _formula_for_stable(op, attrs):
    """The printed form: the stable formula where one is declared."""
    if op.stable is None:
        return _formula_for(op, attrs)
    syms = _param_symbols(op)
    return op.stable.subs({syms[k]: v for k, v in attrs}) if attrs else op.stable


@functools.lru_cache(maxsize=None)
def _partials_for(op, attrs, n_inputs):
    syms = _param_symbols(op)
    values = {syms[k]: v for k, v in attrs if k in syms}
    if op.explicit_partials is not None:
        rules = op.explicit_partials
    else:
        formula = op.formula if op is not EXPR else _formula_for(op, attrs)
        rules = symbolic.partials(formula, n_inputs)
    return tuple(sp.sympify(r).subs(values) for r in rules)


def register(op):
    if not op.name.isidentifier() or keyword.iskeyword(op.name):
        raise GraphError(f"an op name must be a Python identifier, got {op.name!r}")
    REGISTRY[op.name] = op
    return op


# ---- declaring ops -------------------------------------------------------------

def structural(name, n_inputs, shape, vjp, params=(), ref=None, symbol=None, gate="", nondiff=(), jvp=None,
               dtype=None, shape_only=()):
    """Declare a structural op (matmul, sum, reshape...) by its shape rule, its VJP and its
    JVP (forward mode; None where no tangent flows through it). `dtype`: the rule for its
    result's dtype where it takes integers (MOVES for an op that only moves elements)."""
    return register(Op(name, "structural", n_inputs, tuple(params), shape_rule=shape, vjp=vjp, jvp=jvp, ref=ref,
                       symbol=symbol or name, gate=gate, nondiff=tuple(nondiff), dtype_rule=dtype,
                       shape_only=tuple(shape_only)))


# ---- dtypes: a value's elements are floats (the module's dtype) or integers (int64) ------

def MOVES(attrs, *dtypes):
    """The dtype rule of an op that only moves elements (reshape, transpose, indexing,
    broadcasting, concatenation): integers stay integers; its inputs agree."""
    if len(set(dtypes)) > 1:
        raise GraphError("mixes integer and float values; convert one side (gc.one_hot, a comparison)")
    return dtypes[0]


def FIRST(attrs, first, *rest):
    """The dtype rule of an op whose result has its first input's elements."""
    return first


def node_dtype(graph, op, attrs, nodes):
    """The dtype of op's result: the op's rule where it has one; otherwise float, from float
    inputs, but an elementwise op takes an integer where no gradient flows (a comparison's
    operands, where's condition; any input of the fused expressions autodiff writes)."""
    if op.dtype_rule is not None:
        try:
            return op.dtype_rule(dict(attrs), *[n.dtype for n in nodes])
        except GraphError as e:
            fail(graph, op, str(e), [n.shape for n in nodes], nodes=nodes)
    allowed = range(len(nodes)) if op is EXPR else op.nondiff if op.elementwise else ()
    bad = [k for k, n in enumerate(nodes) if n.dtype == "int" and k not in allowed]
    if bad:
        which = ", ".join(f"input {k}" + (f" ({_name_of(nodes[k])})" if _name_of(nodes[k]) else "") for k in bad)
        fail(graph, op, f"{which} holds integers (int64), and {op.name} takes floats: compare integers "
                        "(idx == 3 gives a float mask), or gather with them (gc.take, x[idx], gc.one_hot)",
             [n.shape for n in nodes], nodes=nodes)
    return "float"


# ---- the internal ops -----------------------------------------------------------

INPUT = register(Op("input", "input", 0, symbol="input"))
CONST = register(Op("const", "const", 0, symbol="const"))
# EXPR is the elementwise op whose formula lives in its attributes: the fused
# local-gradient expressions autodiff writes (grad_s3 = grad_L*y*(1 - y)).
EXPR = register(Op("expr", "elementwise", None, symbol="f", gate=""))
EXPR.vjp = EXPR.jvp = None  # the shared elementwise rules (elementwise.py) fill these


# zeros of an input's shape: what a gradient is where none flows (written by autodiff and
# by apply itself, when a local gradient folds to 0)
ZEROS = structural("zeros_like", 1, lambda attrs, x: x, lambda g, y, x: (None,),
                   ref=lambda x: np.zeros_like(x, dtype=np.result_type(x, 1.0)), symbol="0", nondiff=(0,),
                   dtype=lambda attrs, x: "float", shape_only=(0,))   # float zeros, also of an integer's shape


def zeros_like(x):
    return apply(ZEROS, (x,))


def add_input(graph, name, shape, dtype="float"):
    """A new input of `graph` (after the ones it has), as a node; dtype "int": int64 (gc.IntTensor)."""
    if any(n.name == name for n in graph.inputs):
        raise GraphError(f"graph '{graph.name}': input '{name}' is declared twice")
    node = graph.add(INPUT, (("name", name),), (), tuple(shape), name=name, dtype=dtype)
    graph.inputs.append(node)
    return node


def note_domain(tensor, domain):
    """Record that `tensor`, if it is a graph input, must lie in `domain` (the values
    `graphc check` samples: log wants positive ones, a cross-entropy one-hot rows)."""
    node = tensor.node
    if node.op.kind == "input":
        tensor.graph.domains.setdefault(node.name, domain)


def const(graph, value, shape=()):
    value = sp.sympify(value)
    if shape != ():
        raise GraphError("constants are scalars; use broadcasting")
    return graph.add(CONST, (("value", value),), (), ())


def const_value(node):
    """The SymPy value of a constant node, or None."""
    return node.attrs[0][1] if node.op is CONST else None


def fail(graph, op, message, shapes=(), where=None, nodes=()):
    """Raise a GraphError naming the model line, the graph, the op and the shapes of its
    inputs, each after its name where it has one (`W2.T (5, 3)`)."""
    names = [_name_of(n) for n in nodes] or [None] * len(shapes)
    shape_text = (" with input shapes " + ", ".join(f"{name} {format_shape(s)}" if name else format_shape(s)
                                                    for name, s in zip(names, shapes))) if shapes else ""
    raise GraphError(f"{located(graph, where)}: {op.name}{shape_text}: {message}") from None


def _name_of(node):
    """What the user calls a value, where it can be said: an input or named value, its
    transpose (W2.T), its value behind stop_gradient; else None."""
    if node.name:
        return node.name
    if node.op.name in ("transpose", "stop_gradient") and node.inputs:
        inner = _name_of(node.inputs[0])
        return inner and (f"{inner}.T" if node.op.name == "transpose" else inner)
    return None


# ---- apply: the one door into a graph ------------------------------------------

def sibling_key(node):
    """What the sibling outputs of one computation share: all but their attribute "out"."""
    return node.op, node.inputs, tuple(kv for kv in node.attrs if kv[0] != "out")


def _encloses(outer, inner):
    """Whether `inner` is being traced inside `outer` (a scan's step inside its model)."""
    while inner is not None and inner is not outer:
        inner = getattr(inner, "_parent", None)
    return inner is outer


def _graph_of(args):
    """The innermost graph among the arguments' graphs: a step that reads the model's
    weights adds its nodes to the step's graph."""
    found = None
    for a in args:
        if isinstance(a, Tensor) and (found is None or _encloses(found, a.graph)):
            found = a.graph
    return found


def _capture(graph, value):
    """The input of `graph` that stands for `value`, a value of a graph enclosing it (a
    scan's step reading the model's weights), added once; None where none encloses it."""
    parent = getattr(graph, "_parent", None)
    if parent is None:
        return None
    outer = value.node if value.graph is parent else _capture(parent, value)
    if outer is None:
        return None
    node = graph._captured.get(outer)
    if node is None:
        name = Namer(user_names(graph)).fresh(outer.name or "c")
        node = graph._captured[outer] = add_input(graph, name, outer.shape, outer.dtype)
    return node


def as_node(graph, value):
    if isinstance(value, Tensor):
        if value.graph is not graph:
            captured = _capture(graph, value)
            if captured is None:
                raise GraphError(f"graph '{graph.name}': a value from graph '{value.graph.name}' "
                                 "was used here; graphs cannot share values")
            return captured
        return value.node
    if isinstance(value, (bool,)) or not isinstance(value, (int, float, sp.Expr)):
        raise GraphError(f"{located(graph)}: cannot use {type(value).__name__} {value!r} in a graph "
                         "(only graph values and Python numbers)")
    return const(graph, value)


def apply(op, args, **attrs):
    """Add `op(*args, **attrs)` to the graph of its arguments; returns a Tensor."""
    graph = _graph_of(args)
    if graph is None:
        raise GraphError(f"{op.name}: needs at least one graph value (a traced input), "
                         f"got only {args!r}")
    nodes = tuple(as_node(graph, a) for a in args)
    if op.n_inputs is not None and len(nodes) != op.n_inputs:
        fail(graph, op, f"takes {op.n_inputs} inputs, got {len(nodes)}")
    known = dict(op.params)
    unknown = set(attrs) - set(known)
    if unknown:
        fail(graph, op, f"unknown attribute(s) {', '.join(sorted(unknown))}")
    full = tuple((k, _freeze(attrs.get(k, default))) for k, default in op.params)
    if op.domain and nodes and nodes[0].op is INPUT:
        graph.domains.setdefault(nodes[0].name, op.domain)
    return Tensor(graph, add_node(graph, op, full, nodes))


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, float):
        return sp.Float(v) if v != int(v) else sp.Integer(int(v))
    return v


def add_node(graph, op, attrs, nodes):
    """Shape-check, simplify and intern one node; returns a Node."""
    shapes = [n.shape for n in nodes]
    dtype = node_dtype(graph, op, attrs, nodes)
    if op.elementwise:
        shape = broadcast_shapes(*shapes)
        if shape is None:
            fail(graph, op, "shapes do not broadcast together", shapes, nodes=nodes)
        return _add_elementwise(graph, op, attrs, nodes, shape)
    try:
        shape = op.shape_rule(dict(attrs), *shapes)
    except GraphError as e:
        fail(graph, op, str(e), shapes, nodes=nodes)
    return graph.add(op, attrs, nodes, tuple(shape), dtype=dtype)


def readd(graph, node, inputs):
    """The same operation as `node`, on other inputs, in `graph`."""
    if node.op is CONST:
        return const(graph, const_value(node))
    return add_node(graph, node.op, node.attrs, inputs)


def _add_elementwise(graph, op, attrs, nodes, shape):
    consts = tuple((i, const_value(n)) for i, n in enumerate(nodes) if n.op is CONST)
    if op is not EXPR and not consts:
        return graph.add(op, attrs, nodes, shape)
    # which inputs are the same node: fold them into one argument
    pattern = tuple(nodes.index(n) for n in nodes)
    folded, kept = _fold(op.formula_for(attrs), consts, pattern)
    if shape == () and not folded.free_symbols:   # merged inputs cancelled (x >= x, x - x): a number
        kept = ()
    # x*1, x + 0, a unit seed: the result is one of the inputs unchanged
    if len(kept) == 1 and folded == symbolic.ARGS[0] and nodes[kept[0]].shape == shape:
        return nodes[kept[0]]
    if not kept:
        if shape == ():
            return const(graph, folded)
        if op is not EXPR:
            # 0 * x, x ** 0: a constant value, but with x's shape (constants are scalars)
            return graph.add(op, attrs, nodes, shape)
        like = next((n for n in nodes if n.shape == shape), None)
        if folded == 0 and like is not None:
            # a local gradient that vanishes (g * 0, from 0 * x): zeros of g's shape
            return zeros_like(Tensor(graph, like)).node
        # every adjoint has its node's shape, so any other constant-only local
        # gradient can only be scalar; anything else is a bug in a VJP rule
        raise GraphError(f"internal error: constant expression {folded} with shape {shape}")
    if op is not EXPR:
        return graph.add(op, attrs, nodes, shape)
    return graph.add(EXPR, (("expr", folded),), tuple(nodes[k] for k in kept), shape)


@functools.lru_cache(maxsize=4096)
def _fold(formula, consts, pattern):
    """`formula` with the constant inputs substituted and repeated inputs merged.
    Returns the formula over ARGS[:k] and the positions of the k inputs it keeps."""
    args = symbolic.ARGS
    folded = formula.subs({args[i]: v for i, v in consts}) if consts else formula
    free, const_pos = folded.free_symbols, {i for i, _ in consts}
    kept, mapping = [], {}
    for i, first in enumerate(pattern):
        if i in const_pos or args[i] not in free:
            continue
        if first not in kept:
            kept.append(first)
        mapping[args[i]] = args[kept.index(first)]
    return folded.xreplace(mapping), tuple(kept)


def expr(formula, *args):
    """An elementwise node computing `formula` (over symbolic.ARGS) of `args`."""
    graph = _graph_of(args)
    nodes = tuple(as_node(graph, a) for a in args)
    shape = broadcast_shapes(*[n.shape for n in nodes])
    if shape is None:
        fail(graph, EXPR, "shapes do not broadcast together", [n.shape for n in nodes], nodes=nodes)
    return Tensor(graph, _add_elementwise(graph, EXPR, (("expr", sp.sympify(formula)),), nodes, shape))
