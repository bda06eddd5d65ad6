"""A small NumPy interpreter for graphs: the value of every node, and the gradient
flowing through every node and edge.

Compiled modules return only the outputs and the gradients of the inputs; a
diagram needs the numbers on every wire. Each node is computed by its op's NumPy
reference, an elementwise formula by its printed NumPy text (or `sympy.lambdify`
where the printer has no entry), an alias passes its first input through and a
constant gives its value. Gradients come from the same reverse-mode transform as
compiled code (`autodiff.backprop` on a copy of the graph), evaluated here.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from ..autodiff import backprop_seeds, differentiate, resolve_wrt
from ..backends.numpy import TARGET as NUMPY
from ..graph import ops, symbolic
from ..graph.arrays import np_erf
from ..graph.ir import Graph, GraphError, concrete_shape, format_shape
from ..graph.structural import CUSTOM
from ..runtime import numeric_array


# ---- inputs ------------------------------------------------------------------------

def prepare_inputs(graph, values):
    """Check `values` ({input name: number or array}) against the declared shapes.
    Returns ({name: float64 array}, {dimension name: size})."""
    if not isinstance(values, dict):
        raise GraphError(f"graph '{graph.name}': values must be a dict {{input name: value}}, "
                         f"got {type(values).__name__}")
    unknown = [k for k in values if k not in graph.input_names]
    if unknown:
        raise GraphError(f"graph '{graph.name}' has no input {unknown[0]!r} "
                         f"(inputs: {', '.join(graph.input_names)})")
    missing = [n for n in graph.input_names if n not in values]
    if missing:
        raise GraphError(f"graph '{graph.name}': no value for input(s) {', '.join(missing)}")
    arrays = {n.name: as_array(graph, n.name, values[n.name], n.dtype) for n in graph.inputs}
    dims = {}
    for node in graph.inputs:
        actual = arrays[node.name].shape
        if len(actual) != len(node.shape):
            raise GraphError(f"graph '{graph.name}': input '{node.name}' is declared with shape "
                             f"{format_shape(node.shape)}, got a value of shape {format_shape(actual)}")
        for d, n in zip(node.shape, actual):
            if isinstance(d, sp.Symbol) and dims.setdefault(str(d), n) != n:
                raise GraphError(f"graph '{graph.name}': dimension {d} is {dims[str(d)]} in one input "
                                 f"and {n} in '{node.name}'")
    for node in graph.inputs:
        want = concrete_shape(node.shape, dims)
        if arrays[node.name].shape != want:
            raise GraphError(f"graph '{graph.name}': input '{node.name}' has shape "
                             f"{format_shape(node.shape)} = {format_shape(want)}, got a value of shape "
                             f"{format_shape(arrays[node.name].shape)}")
    return arrays, dims


def as_array(graph, name, value, dtype="float"):
    array = numeric_array(value)
    if array is None:
        raise GraphError(f"graph '{graph.name}': the value of '{name}' is not a number or an array "
                         f"of numbers: {value!r}")
    if dtype == "int":   # an integer input (gc.IntTensor): integers only
        if array.dtype.kind not in "iu":
            raise GraphError(f"graph '{graph.name}': '{name}' is declared gc.IntTensor: it takes integers, "
                             f"got {array.dtype} values")
        return array.astype(np.int64, copy=False)
    return array.astype(np.float64, copy=False)


# ---- values ------------------------------------------------------------------------

def evaluate(graph, inputs, dims, roots=None, known=None):
    """{node: value} for the nodes `roots` need (default: the outputs), from `inputs`
    ({input name: array}) and `dims` ({dimension name: size})."""
    values = dict(known or {})
    with np.errstate(all="ignore"):   # a diagram shows inf and nan as they are
        for node in graph.live_nodes(roots):
            if node not in values:
                values[node] = _value(node, [values[i] for i in node.inputs], inputs, dims)
    return values


def _value(node, args, inputs, dims):
    op = node.op
    if op.kind == "input":
        value = inputs[node.name]
    elif op.kind == "const":
        value = _number(ops.const_value(node), dims)
    elif op.kind == "alias":
        value = args[0]
    elif op.siblings:
        value = _scan(node, args, dims)
    elif op.elementwise and (op is ops.EXPR or op.ref is None):
        value = _formula(op.printed_formula(node.attrs), len(args), tuple(sorted(dims.items())))(*args)
    elif op.ref is None:
        raise GraphError(f"op '{op.name}' has no NumPy reference, so its values cannot be computed")
    else:
        value = op.ref(*args, **{k: _concrete(v, dims) for k, v in node.attrs})
    value = np.asarray(value, dtype=np.int64 if node.dtype == "int" else np.float64)
    shape = concrete_shape(node.shape, dims)
    return value if value.shape == shape else np.broadcast_to(value, shape)


def _scan(node, args, dims):
    """One output of a scan: its step graph evaluated once a step."""
    a = node.attr
    body, c, m, out = a["body"], a["carries"], a["xs"], a["out"]
    n, steps = len(body.outputs) - c, _concrete(a["length"], dims)
    carry, stacked = list(args[:c]), {}
    for t in (range(steps - 1, -1, -1) if a["reverse"] else range(steps)):
        step_inputs = [*carry, *(x[t] for x in args[c:c + m]), *args[c + m:]]
        values = evaluate(body, dict(zip(body.input_names, step_inputs)), dims)
        results = [values[o] for _, o in body.outputs]
        stacked[t] = results[c:] + carry   # the ys, then the carries entering the step
        carry = results[:c]
    if out < c:
        return carry[out]
    if not stacked:
        return np.zeros(concrete_shape(node.shape, dims))
    return np.stack([stacked[t][out - c] for t in range(steps)])


def _number(value, dims):
    value = sp.sympify(value)
    if value.free_symbols:
        value = value.subs({s: dims[str(s)] for s in value.free_symbols})
    return float(value)


def _concrete(value, dims):
    """An attribute as NumPy wants it: SymPy numbers (and dimensions) become ints and floats."""
    if isinstance(value, tuple):
        return tuple(_concrete(v, dims) for v in value)
    if isinstance(value, sp.Expr):
        if value.free_symbols:
            value = value.subs({s: dims[str(s)] for s in value.free_symbols})
        return int(value) if value.is_Integer else float(value)
    return value


@functools.lru_cache(maxsize=1024)
def _formula(formula, n_args, dims):
    """A NumPy function of n_args arrays computing `formula` (over symbolic.ARGS)."""
    sizes = {s: dict(dims)[str(s)] for s in formula.free_symbols if str(s) in dict(dims)}
    formula = formula.subs(sizes) if sizes else formula
    args = [f"a{i}" for i in range(n_args)]
    functions = NUMPY.functions("np")
    try:
        text = symbolic.Printer(functions, dict(zip(symbolic.ARGS, args)))(formula)
        # __erf: the numpy target's name for erf, which its modules define (gelu's)
        return eval(f"lambda {', '.join(args) or '*_'}: {text}", {"np": np, "__erf": np_erf})  # noqa: S307
    except (NotImplementedError, KeyError):   # a function the printer does not know
        return sp.lambdify(symbolic.ARGS[:n_args], formula, modules="numpy")


# ---- gradients -----------------------------------------------------------------------

class Evaluation:
    """The numbers of one graph at one point: every node's value and the gradient of the
    first output with respect to every node (`grads`) and along every edge (`edge`).

    `backward` is a copy of the graph with the adjoint nodes added; its first
    `forward_count` nodes are the forward graph's. The seed is the constant 1 for a
    scalar output, else an input named grad_out (ones unless given)."""

    def __init__(self, graph, values, grad_out=None, wrt=None):
        self.graph = graph
        self.inputs, self.dims = prepare_inputs(graph, values)
        self.wrt = resolve_wrt(graph, wrt)
        out_name, out = graph.outputs[0]
        self.forward_count = len(graph.nodes)
        first_record = len(graph.adjoints)
        out_shape = concrete_shape(out.shape, self.dims)
        # every input, so that every edge of the diagram carries its gradient
        seeded_by_one = grad_out is None and out.shape == ()
        g, self.seed, adjoints = differentiate(graph, list(graph.inputs), "one" if seeded_by_one else "input")
        self.backward = g
        seed_value = None
        if not seeded_by_one:
            seed_value = np.ones(out_shape) if grad_out is None else as_array(graph, "grad_out", grad_out)
            if seed_value.shape != out_shape:
                try:
                    seed_value = np.broadcast_to(seed_value, out_shape)
                except ValueError:
                    raise GraphError(f"graph '{graph.name}': grad_out has shape {format_shape(seed_value.shape)}, "
                                     f"the output '{out_name}' {format_shape(out_shape)}") from None
        self.records = g.adjoints[first_record:]
        self.input_grads = {w: adjoints[w] for w in self.wrt}
        roots = ([n for _, n in graph.outputs] + [r.adjoint for r in self.records]
                 + list(adjoints.values()))
        inputs = dict(self.inputs) if seed_value is None else {**self.inputs, "grad_out": seed_value}
        self.values = evaluate(g, inputs, self.dims, roots)
        self.grads = {}
        for rec in self.records:   # one record per node that the gradient reaches
            shape = concrete_shape(rec.forward.shape, self.dims)
            self.grads[rec.forward] = np.broadcast_to(self.values[rec.adjoint], shape)
        self._edges = {}

    def value(self, node):
        return self.values.get(node)

    def grad(self, node):
        """d first output / d node, or None where no gradient reaches it."""
        return self.grads.get(node)

    def edge(self, consumer, slot):
        """The gradient flowing back along the edge into input `slot` of `consumer`:
        that gate's contribution alone (a value used twice receives the sum of two)."""
        key = (consumer, slot)
        if key not in self._edges:
            self._edges[key] = self._edge(consumer, slot)
        return self._edges[key]

    def _edge(self, consumer, slot):
        group = self._siblings(consumer)
        gs = [self.grads.get(n) for n in group]
        source = consumer.inputs[slot]
        if all(g is None for g in gs) or source.op is ops.CONST or (consumer.op is CUSTOM and slot == 0):
            return None
        if consumer is not next(n for n, g in zip(group, gs) if g is not None):
            return None   # siblings send one gradient back, drawn on the first one's wire
        # the gate alone (a scan: its siblings together), on inputs of its own: its VJP gives
        # this edge's contribution
        mini = Graph(f"{self.graph.name}_edge")
        ins = tuple(ops.const(mini, ops.const_value(i)) if i.op is ops.CONST
                    else ops.add_input(mini, f"a{k}", i.shape, i.dtype) for k, i in enumerate(consumer.inputs))
        seeds = [(ops.readd(mini, n, ins), ops.add_input(mini, f"g{k}", n.shape))
                 for k, (n, g) in enumerate(zip(group, gs)) if g is not None]
        backprop_seeds(mini, seeds, [ins[slot]])
        found = [r.adjoint for r in mini.adjoints if r.forward is ins[slot]]
        if not found:
            return None
        inputs = {f"a{k}": self.values[i] for k, i in enumerate(consumer.inputs) if i.op is not ops.CONST}
        inputs.update({f"g{k}": g for k, g in enumerate(gs) if g is not None})
        values = evaluate(mini, inputs, self.dims, roots=found)
        return np.broadcast_to(values[found[0]], concrete_shape(source.shape, self.dims))

    def _siblings(self, node):
        """The outputs of the computation `node` is one of (a scan's), or just `node`."""
        if not node.op.siblings:
            return [node]
        key = ops.sibling_key(node)
        return sorted((n for n in self.graph.nodes if n.op.siblings and ops.sibling_key(n) == key),
                      key=lambda n: n.attr["out"])
