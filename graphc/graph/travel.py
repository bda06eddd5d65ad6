"""How a Graph pickles (to another process or machine): Graph.__reduce__ calls `reduce`.

A graph travels as one inner pickle in which every node of its list is a number (its index:
a persistent id), so that pickle never recurses along a chain of inputs (a deep graph would
exhaust its recursion limit), and every record that holds nodes (the adjoints, tangents,
running averages) travels as it is. An op travels by name, to the receiver's record of it
(its rules are code, found where graphc and the model's modules are installed); an
elementwise op by its formulas, which are data, so that one declared with gc.elementwise
travels too. A function in a node's attributes (a custom gradient rule) travels by its
name; a lambda, or a function defined inside another, cannot, and the error names it.
"""
from __future__ import annotations

import importlib
import io
import pickle
import sys
import types

from .ir import BEHAVIOUR, Graph, GraphError, Node
from .ops import EXPR, REGISTRY, Op, register

_TRACING_STATE = ("nodes", "_interned", "_origin", "_scope", "_code")   # rebuilt, or only set while tracing


def reduce(graph):
    return (_graph_from, (len(graph.nodes), _graph_bytes(graph)))


def importable(fn) -> bool:
    """Whether pickle can send `fn` by reference: a function found under its own name at the
    top level of its module (not a lambda, nor one defined inside another function)."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    return module is not None and getattr(module, getattr(fn, "__qualname__", "<"), None) is fn


class _Pickler(pickle.Pickler):
    def __init__(self, file, nodes):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.nodes = nodes

    def persistent_id(self, obj):
        if type(obj) is Node and obj.index < len(self.nodes) and self.nodes[obj.index] is obj:
            return obj.index
        return None

    def reducer_override(self, obj):
        if type(obj) is not Op:
            return NotImplemented
        if obj.elementwise and obj is not EXPR:
            return (_elementwise_op, (obj.name, obj.n_inputs, obj.params, obj.formula, obj.stable,
                                      obj.explicit_partials, obj.symbol, obj.gate, obj.nondiff, obj.domain,
                                      obj.ref if importable(obj.ref) else None))
        if REGISTRY.get(obj.name) is not obj:
            raise GraphError(f"op {obj.name!r} cannot be pickled: it is not the registered op of that name")
        return (_registered_op, (obj.name,))


def _graph_bytes(graph):
    for node in graph.nodes:   # a user's lambda as a custom rule cannot travel: say which
        for key, value in node.attrs:
            if isinstance(value, types.FunctionType) and not importable(value):
                raise GraphError(f"graph '{graph.name}' cannot be pickled: the {node.op.name} at {node.where} "
                                 f"holds {value.__qualname__} as its {key!r}, a lambda or a function defined "
                                 "inside another, which pickle cannot send by name; define it with `def` at "
                                 "the top level of a module")
    state = {k: v for k, v in vars(graph).items() if k not in _TRACING_STATE}
    if graph.traced is not None and not importable(graph.traced[0]):
        fn, rest = graph.traced[0], graph.traced[1:]
        made = getattr(sys.modules.get(fn.__module__), fn.__qualname__, None)
        # @gc.graph put the graph in the function's place: found by the graph's name; else the
        # graph travels without it (only gc.variant needs it)
        state["traced"] = (_TracedBy(fn.__module__, fn.__qualname__), *rest) \
            if isinstance(made, Graph) and made.traced and made.traced[0] is fn else None
    records = [(n.op, n.attrs, n.inputs, n.shape, n.dtype, n.name, n.where, n.origin, n.scope) for n in graph.nodes]
    buffer = io.BytesIO()
    _Pickler(buffer, graph.nodes).dump((records, state))
    return buffer.getvalue()


def _graph_from(count, data):
    nodes = [Node.__new__(Node) for _ in range(count)]
    unpickler = pickle.Unpickler(io.BytesIO(data))
    unpickler.persistent_load = nodes.__getitem__
    records, state = unpickler.load()
    for index, (node, record) in enumerate(zip(nodes, records)):
        (node.op, node.attrs, node.inputs, node.shape, node.dtype, node.name, node.where, node.origin,
         node.scope) = record
        node.index = index
    graph = Graph(state["name"], state["source"])
    vars(graph).update(state)
    graph.nodes = nodes
    graph._interned = {(n.op, n.attrs, n.inputs): n for n in nodes}
    return graph


class _TracedBy:
    """The function that @gc.graph replaced by its graph in a module, sent by that name."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __reduce__(self):
        return (_traced_function, (self.module, self.name))


def _traced_function(module, name):
    return getattr(importlib.import_module(module), name).traced[0]


def _registered_op(name):
    if name not in REGISTRY:
        raise GraphError(f"op {name!r} is not declared in this process: import the module that declares "
                         "it before unpickling a graph that uses it")
    return REGISTRY[name]


def _elementwise_op(name, n_inputs, params, formula, *rest):
    """The receiver's elementwise op of that name where it has the same formulas (the one
    record every graph there shares), else this one, registered if the name is free."""
    mine = REGISTRY.get(name)
    if mine is not None and mine.elementwise and (mine.n_inputs, mine.params, mine.formula, mine.stable,
                                                   mine.explicit_partials) == (n_inputs, params, formula, *rest[:2]):
        return mine
    stable, partials, symbol, gate, nondiff, domain, ref = rest
    op = Op(name, "elementwise", n_inputs, params, lambda: (formula, stable, partials), ref=ref, symbol=symbol,
            gate=gate, nondiff=nondiff, domain=domain)
    op.vjp, op.jvp = EXPR.vjp, EXPR.jvp   # the rules every elementwise op shares (elementwise.py)
    return register(op) if mine is None else op


BEHAVIOUR["pickle"] = reduce
