"""graphc: a symbolic computational-graph compiler that writes flat backprop code.

    import graphc as gc

    @gc.graph
    def neuron(w0, x0, w1, x1, w2):
        return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

    fn = gc.compile(neuron)            # fn.source is the generated module
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
"""
from .version import __version__
from .graph.ir import BEHAVIOUR, Graph, GraphError
from .graph.tensor import Tensor, IntTensor
from .graph.ops import REGISTRY
from .graph.elementwise import elementwise
from .graph.primitives import (
    add, sub, mul, div, pow, neg, exp, log, sqrt, abs, reciprocal, sin, cos, sigmoid, tanh,
    softplus, relu, leaky_relu, elu, prelu, maximum, minimum, greater, less, greater_equal,
    less_equal, equal, not_equal, where,
)
from .graph.functions import (
    log1p, expm1, log2, log10, logaddexp, tan, sinh, cosh, arcsin, arccos, arctan, arcsinh, arccosh,
    arctanh, arctan2, hypot, sign, mod, clip,
)
from .graph.structural import matmul, transpose, sum, mean, max, reshape, broadcast_to, stop_gradient
from .graph.indexing import getitem, concatenate, stack
from .graph.integers import take, one_hot, argmax, argmin, sort
from .graph.arrays import (
    min, prod, var, std, cumsum, split, repeat, tile, pad, roll, moveaxis, swapaxes, diagonal, trace,
    tril, triu, gelu,
)
from .graph.contract import einsum, tensordot
from .graph.conv import conv1d, conv2d, max_pool2d, avg_pool2d, flatten
from .graph.nn import (
    softmax, log_softmax, logsumexp, softmax_cross_entropy, mse, binary_cross_entropy,
    binary_cross_entropy_with_logits, l1, l2, linear, dropout, batch_norm, layer_norm, maxout,
)
from .frontend import graph, scope, variant, scan
from .autodiff import grad, jvp, jacobian, hessian, hvp
from .compiler import compile
from .runtime import CompiledGraph
from .backends import TARGETS                      # names for --target
from .train import optim, schedules, init, data, diagnostics
from .train.gradcheck import gradcheck
from .train.device import to_device, to_host       # cuda: state on the GPU


def _notebook_svg(g):
    """The structure diagram a notebook shows for a graph: None where Graphviz's dot program
    is missing, or the graph is too large to be read as a picture."""
    if len(g.nodes) > 300:
        return None
    import graphviz
    try:
        return render(g).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return None


BEHAVIOUR["svg"] = _notebook_svg


def render(graph, values=None, path=None, **options):
    """Draw `graph` as the lecture's circuit diagram and return it as a graphviz.Digraph
    (see graphc.diagrams.diagram.render). Imported on first use: the compiler never needs Graphviz."""
    from .diagrams.diagram import render as _render
    return _render(graph, values, path, **options)


def __getattr__(name):
    """gc.distributed, imported on first use (Dask is an optional extra, which `import graphc`
    never imports); an unknown `gc.<name>`: the error names the closest that exist
    (gc.sigmod: gc.sigmoid)."""
    if name == "distributed":
        import importlib
        return importlib.import_module(".distributed", __name__)
    import difflib
    public = [n for n in globals() if not n.startswith("_")]
    close = difflib.get_close_matches(name, public, n=3, cutoff=0.6)
    # only those about as close as the closest (gc.sigmod: gc.sigmoid, not also gc.mod, gc.sign)
    score = lambda c: difflib.SequenceMatcher(None, name, c).ratio()  # noqa: E731
    close = [c for c in close if score(c) >= score(close[0]) - 0.15]
    hint = f"; did you mean {' or '.join(f'gc.{c}' for c in close)}?" if close else ""
    raise AttributeError(f"module 'graphc' has no attribute {name!r}{hint}")
