"""The graph: nodes, interning (CSE), topological order and a text dump.

A Graph is append-only: a node's inputs are always added before it, so the
node list *is* a topological order and no pass ever needs to recurse.
Adding a node that already exists (same op, attributes and inputs) returns
the existing one, which is common-subexpression elimination for free.
"""
from __future__ import annotations

import html
import keyword
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .lazy import sp

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep   # graphc/, not graphc/graph/


class GraphError(ValueError):
    """A problem with a user's graph, worded for the user (no traceback needed)."""


@dataclass(frozen=True)
class Where:
    """The model-file line that created a node."""
    file: str
    line: int

    def __str__(self):
        return f"{self.file}:{self.line}"


def caller_location() -> Where | None:
    """The first stack frame outside the graphc package: the user's model line."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            return Where(filename, frame.f_lineno)
        frame = frame.f_back
    return None


def located(graph, where=None) -> str:
    """How an error begins: `FILE:LINE: graph 'g'`, then, while tracing, the gc.scope and
    the line of the model function that led there, where that is another line (a helper's
    error is called from the model): `m.py:5: graph 'net' (in layer2, called from m.py:13)`."""
    where = where or caller_location()
    context = []
    if graph._scope:
        context.append(f"in {'/'.join(graph._scope)}")
    site = _call_site(graph)
    if site is not None and site != where:
        context.append(f"called from {site}")
    return (f"{where}: " if where else "") + f"graph '{graph.name}'" + (f" ({', '.join(context)})" if context else "")


def _call_site(graph):
    """The line of the model function being traced into `graph` that is running now."""
    frame = sys._getframe(2)
    while frame is not None and graph._code is not None:
        if frame.f_code is graph._code:
            return Where(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


# ---- shapes -----------------------------------------------------------------
# A shape is a tuple of dimensions: Python ints, or SymPy expressions of named
# symbolic dimensions ("B"), so one compiled module serves every batch size.

def dim(value):
    """A dimension from user input: int or the name of a symbolic dimension."""
    if isinstance(value, bool):
        raise GraphError(f"a dimension must be an int or a name, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise GraphError(f"a dimension must not be negative, got {value}")
        return value
    if isinstance(value, str):
        if not value.isidentifier() or value.startswith("_") or keyword.iskeyword(value):
            raise GraphError(f"a symbolic dimension must be a plain name like 'B', got {value!r}")
        return sp.Symbol(value, integer=True, positive=True)
    if isinstance(value, sp.Expr):
        return int(value) if value.is_Integer else value
    raise GraphError(f"a dimension must be an int or a name, got {value!r}")


def format_shape(shape) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def size_of(shape):
    """Number of elements, an int or a SymPy expression."""
    total = sp.Integer(1)
    for d in shape:
        total = total * d
    return int(total) if total.is_Integer else total


def broadcast_shapes(*shapes):
    """NumPy broadcasting, static: returns the shape or None if incompatible."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        d = 1
        for s in shapes:
            k = axis - (ndim - len(s))
            if k < 0:
                continue
            e = s[k]
            if e == 1 or e == d:
                continue
            if d == 1:
                d = e
            else:
                return None
        out.append(d)
    return tuple(out)


def concrete_shape(shape, dims):
    """Shape with its symbolic dimensions given values (`dims`: name -> int)."""
    out = []
    for d in shape:
        d = sp.sympify(d)
        out.append(int(d.subs({s: dims[str(s)] for s in d.free_symbols})))
    return tuple(out)


# ---- nodes and graphs ---------------------------------------------------------

# What a Graph does that only the stages above the IR know how to do. The IR imports
# none of them; they fill this table when imported (and `import graphc` imports them
# all): "call" (frontend.py) inlines a graph into the one being traced, "text"
# (lower/dump.py) is the dump that names values as the generated code does, "svg"
# (graphc/__init__.py) the diagram a notebook shows, or None; "pickle" (graph/travel.py,
# which runtime.py imports) how a graph pickles.
BEHAVIOUR = {}


class Node:
    """One operation. (op, attrs, inputs) is its identity; the rest is metadata
    kept from the first time it was added (name, creating line, gate)."""

    __slots__ = ("op", "attrs", "inputs", "shape", "dtype", "index", "name", "where", "origin", "scope")

    def __init__(self, op, attrs, inputs, shape, index, name=None, where=None, origin=None, scope=(),
                 dtype="float"):
        self.op = op            # an ops.Op record
        self.attrs = attrs      # tuple of (key, value) pairs, hashable
        self.inputs = inputs    # tuple of Node
        self.shape = shape      # tuple of dims
        self.dtype = dtype      # its elements: "float" (the module's dtype) or "int" (int64, never
                                # differentiated: gc.IntTensor inputs, argmax); set by the op's rule
        self.index = index      # position in its graph: a stable, id()-free key
        self.name = name        # user-given name (inputs, .named(), outputs)
        self.where = where      # Where it was created in the model file
        self.origin = origin    # (forward node, note) of the gate whose VJP made it
        self.scope = scope      # the gc.scope names it was traced in, outermost first

    @property
    def attr(self):
        return dict(self.attrs)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<Node {self.index} {self.op.name}{format_shape(self.shape)}{' int' if self.dtype == 'int' else ''}>"


class Graph:
    """A static graph: inputs, nodes in topological order, named outputs."""

    def __init__(self, name, source=None):
        self.name = name
        self.source = source            # Where the graph was declared
        self.nodes: list[Node] = []
        self.inputs: list[Node] = []
        self.outputs: list[tuple[str, Node]] = []
        self.output_kind = "single"     # "single" | "tuple" | "dict": how forward returns
        self.wrt: tuple[str, ...] | None = None
        self.adjoints: list = []        # autodiff.Adjoint records, in the order found
        self.tangents: dict = {}        # tangent node -> the node it is the tangent of (forward mode)
        self.domains: dict = {}         # input name -> the values it must take (sampling.py)
        self.running: dict = {}         # name -> (kind, node): a running average (batch norm); node is
                                        # the batch value a training graph outputs, None for an input
        self.in_place: dict = {}        # output name -> the input whose array it may be written into
                                        # (update rules: gc.rules.compile_rule)
        self.traced = None              # (function, wrt, options) it was traced from (frontend.variant)
        self._interned: dict = {}
        self._origin = None             # set by autodiff while a gate's VJP runs
        self._scope = ()                # set by gc.scope while tracing: stamped on new nodes
        self._code = None               # the model function's code while it is traced (errors)

    # -- building
    def add(self, op, attrs, inputs, shape, name=None, dtype="float"):
        key = (op, attrs, inputs)
        node = self._interned.get(key)
        if node is None:
            # an adjoint takes its forward node's place: no stack walk per adjoint
            where = caller_location() if self._origin is None else self._origin[0].where
            node = Node(op, attrs, inputs, shape, len(self.nodes), name=name,
                        where=where, origin=self._origin, scope=self._scope, dtype=dtype)
            self.nodes.append(node)
            self._interned[key] = node
        return node

    def copy(self, name=None):
        """A graph that shares this one's nodes and can be extended separately."""
        g = Graph(name or self.name, self.source)
        g.nodes = list(self.nodes)
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.output_kind = self.output_kind
        g.wrt = self.wrt
        g.adjoints = list(self.adjoints)
        g.tangents = dict(self.tangents)
        g.domains = dict(self.domains)
        g.running = dict(self.running)
        g.in_place = dict(self.in_place)
        g._interned = dict(self._interned)
        return g

    def input(self, name):
        for n in self.inputs:
            if n.name == name:
                return n
        raise GraphError(f"graph '{self.name}' has no input '{name}' "
                         f"(inputs: {', '.join(n.name for n in self.inputs)})")

    @property
    def input_names(self):
        return tuple(n.name for n in self.inputs)

    @property
    def output_names(self):
        return tuple(name for name, _ in self.outputs)

    def default_wrt(self):
        """The graph's wrt, else every input but the integer ones (which have no gradient)."""
        return self.wrt if self.wrt is not None else tuple(n.name for n in self.inputs if n.dtype == "float")

    def live_nodes(self, roots=None):
        """Nodes that the outputs (or `roots`) depend on, in topological order."""
        roots = [n for _, n in self.outputs] if roots is None else roots
        live = bytearray(len(self.nodes))
        for n in roots:
            live[n.index] = 1
        for n in reversed(self.nodes):
            if live[n.index]:
                for i in n.inputs:
                    live[i.index] = 1
        return [n for n in self.nodes if live[n.index]]

    def __call__(self, *args):
        """Inside a trace, a graph called on traced values is inlined into that graph."""
        return BEHAVIOUR["call"](self, args)

    def __str__(self):
        """The graph as text, one node a line, named as the generated code names them."""
        return BEHAVIOUR["text"](self)

    def __repr__(self):
        return f"<graphc.Graph {self.name}({', '.join(self.input_names)}) -> {', '.join(self.output_names)}>"

    # -- in a notebook: a table of the inputs and outputs, and the diagram ("svg", filled by
    # graphc/__init__.py, draws it where Graphviz's dot is installed)
    def _repr_svg_(self):
        return BEHAVIOUR["svg"](self)

    def _repr_html_(self):
        return html_summary(f"graph {self.name}", [("input", n.name, n.shape) for n in self.inputs]
                            + [("output", name, n.shape) for name, n in self.outputs], self._repr_svg_())

    def __reduce__(self):   # pickling (graph/travel.py): the nodes as a flat list, ops by name
        return BEHAVIOUR["pickle"](self)


def html_summary(title, rows, svg=None):
    """A notebook's view of a graph or a compiled function: a table of (kind, name, shape)
    rows, then the diagram's SVG where there is one."""
    cells = "".join(f"<tr><td>{kind}</td><td><code>{html.escape(name)}</code></td>"
                    f"<td><code>{html.escape(format_shape(shape))}</code></td></tr>" for kind, name, shape in rows)
    return (f"<b>{html.escape(title)}</b><table><tr><th></th><th>name</th><th>shape</th></tr>{cells}</table>"
            + (svg or ""))
