"""The traced value a model function computes with, and its type annotation.

`gc.Tensor["B", 784]` in a signature declares an input's static shape;
inside a traced function every value is a `Tensor` handle (a graph and a node),
and its operators add nodes. Nothing here computes numbers.
"""
from __future__ import annotations

import numbers

from .ir import GraphError, dim, format_shape, located
from .names import check_name


class TensorSpec:
    """An input declaration: `Tensor[2, 3]`, `Tensor["B", 784]`, `Tensor[()]`; `IntTensor["B"]`
    declares int64 elements (dtype "int")."""

    def __init__(self, dims, dtype="float"):
        self.shape = tuple(dim(d) for d in dims)
        self.dtype = dtype

    def __repr__(self):
        kind = "IntTensor" if self.dtype == "int" else "Tensor"
        return f"{kind}[{', '.join(repr(d) if isinstance(d, int) else repr(str(d)) for d in self.shape)}]"


class IntTensor:
    """`gc.IntTensor[dims...]`: an input of int64 elements (labels, indices), never differentiated."""

    def __class_getitem__(cls, dims):
        return TensorSpec(dims if isinstance(dims, tuple) else (dims,), "int")


# The functions behind Tensor's operators and methods, by op name. The modules that
# declare those ops (primitives.py, structural.py, indexing.py) import this one, so they
# fill the table rather than this module importing them.
OPERATORS = {}


class Tensor:
    """A value in a graph being traced."""

    __slots__ = ("graph", "node")
    __array_ufunc__ = None   # so `np.float64(2) * t` defers to Tensor.__rmul__

    def __init__(self, graph, node):
        self.graph = graph
        self.node = node

    def __class_getitem__(cls, dims):
        return TensorSpec(dims if isinstance(dims, tuple) else (dims,))

    # -- facts
    @property
    def shape(self):
        return self.node.shape

    @property
    def ndim(self):
        return len(self.node.shape)

    @property
    def dtype(self):
        """"float" (the compiled module's dtype) or "int" (int64)."""
        return self.node.dtype

    def __repr__(self):
        return f"<graphc.Tensor {self.node.op.name}{format_shape(self.shape)} in graph '{self.graph.name}'>"

    def named(self, name):
        """Give this value a name of its own in the generated code and diagrams."""
        check_name(self.graph, name, "a value")
        if self.node.name is not None and self.node.name != name:
            raise GraphError(f"graph '{self.graph.name}': this value is already named "
                             f"'{self.node.name}', cannot also name it '{name}'")
        if any(n.name == name and n is not self.node for n in self.graph.nodes):
            raise GraphError(f"graph '{self.graph.name}': the name '{name}' is already used")
        self.node.name = name
        return self

    # -- arithmetic (Python numbers become constants)
    def __add__(self, o): return OPERATORS["add"](self, o)
    def __radd__(self, o): return OPERATORS["add"](o, self)
    def __sub__(self, o): return OPERATORS["sub"](self, o)
    def __rsub__(self, o): return OPERATORS["sub"](o, self)
    def __mul__(self, o): return OPERATORS["mul"](self, o)
    def __rmul__(self, o): return OPERATORS["mul"](o, self)
    def __truediv__(self, o): return OPERATORS["div"](self, o)
    def __rtruediv__(self, o): return OPERATORS["div"](o, self)
    def __pow__(self, o): return OPERATORS["pow"](self, o)
    def __rpow__(self, o): return OPERATORS["pow"](o, self)
    def __neg__(self): return OPERATORS["neg"](self)
    def __pos__(self): return self
    def __abs__(self): return OPERATORS["abs"](self)
    def __matmul__(self, o): return OPERATORS["matmul"](self, o)
    def __rmatmul__(self, o): return OPERATORS["matmul"](o, self)
    def __gt__(self, o): return OPERATORS["greater"](self, o)
    def __lt__(self, o): return OPERATORS["less"](self, o)
    def __ge__(self, o): return OPERATORS["greater_equal"](self, o)
    def __le__(self, o): return OPERATORS["less_equal"](self, o)

    # x == y and x != y are masks too (gc.equal, gc.not_equal), against a graph value or a
    # number; anything else compares by identity. Hashing stays by identity (__hash__ below).
    def __eq__(self, o):
        return OPERATORS["equal"](self, o) if isinstance(o, (Tensor, numbers.Real)) else NotImplemented

    def __ne__(self, o):
        return OPERATORS["not_equal"](self, o) if isinstance(o, (Tensor, numbers.Real)) else NotImplemented

    def __getitem__(self, index): return OPERATORS["getitem"](self, index)

    # -- structure
    @property
    def T(self):
        return OPERATORS["transpose"](self)

    def transpose(self, *axes):
        return OPERATORS["transpose"](self, axes[0] if len(axes) == 1 and isinstance(axes[0], tuple) else (axes or None))

    def reshape(self, *shape):
        return OPERATORS["reshape"](self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)

    def sum(self, axis=None, keepdims=False):
        return OPERATORS["sum"](self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return OPERATORS["mean"](self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return OPERATORS["max"](self, axis=axis, keepdims=keepdims)

    # -- what a static graph cannot do
    def _static(self, what):
        raise GraphError(f"{located(self.graph)}: {what} of a traced "
                         "value is unknown while the graph is built (graphs are static); "
                         "use gc.where(cond, a, b) instead of Python branches")

    def __bool__(self): self._static("the truth value")
    def __float__(self): self._static("the float value")
    def __int__(self): self._static("the int value")
    def __index__(self): self._static("the index value")
    def __iter__(self): self._static("iterating over the elements")

    def __len__(self):
        if not self.shape:
            raise GraphError(f"graph '{self.graph.name}': len() of a scalar")
        return self.shape[0]

    __hash__ = object.__hash__
