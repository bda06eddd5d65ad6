"""graphc: a symbolic computational-graph compiler that writes flat backprop code.

    import graphc as gc

    @gc.graph
    def neuron(w0, x0, w1, x1, w2):
        return gc.sigmoid(w0 * x0 + w1 * x1 + w2)

    fn = gc.compile(neuron)            # fn.source is the generated module
    value, grads = fn.value_and_grad(2.0, -1.0, -3.0, -2.0, -3.0)
"""
__version__ = "0.1.0"

from .ir import Graph, GraphError                                     # noqa: E402
from .tensor import Tensor                                            # noqa: E402
from .ops import elementwise, REGISTRY                                # noqa: E402
from .primitives import (                                             # noqa: E402
    add, sub, mul, div, pow, neg, exp, log, sqrt, abs, reciprocal, sin, cos, sigmoid, tanh,
    softplus, relu, leaky_relu, elu, prelu, maximum, minimum, greater, less, greater_equal,
    less_equal, equal, where,
)
from .structural import matmul, transpose, sum, mean, max, reshape, stop_gradient  # noqa: E402
from .indexing import getitem, concatenate, stack                     # noqa: E402
from .nn import (                                                     # noqa: E402
    softmax, log_softmax, logsumexp, softmax_cross_entropy, mse, binary_cross_entropy,
    binary_cross_entropy_with_logits, l1, l2, linear, dropout, batch_norm, maxout,
)
from .frontend import graph, scope, variant                           # noqa: E402
from .autodiff import grad                                            # noqa: E402
from .compiler import compile, CompiledGraph                          # noqa: E402
from .targets import TARGETS                                          # noqa: E402  (names for --target)
from .gradcheck import gradcheck                                      # noqa: E402
from . import optim, schedules, init, data, diagnostics               # noqa: E402  (training)
from .device import to_device, to_host                               # noqa: E402  (cuda: state on the GPU)


def render(graph, values=None, path=None, **options):
    """Draw `graph` as the lecture's circuit diagram and return it as a graphviz.Digraph
    (see graphc.diagram.render). Imported on first use: the compiler never needs Graphviz."""
    from .diagram import render as _render
    return _render(graph, values, path, **options)
