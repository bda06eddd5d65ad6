"""gc.scan's op: a loop in the graph, whose body is a graph of its own (the step).

`scan(step, init, xs)` (frontend.py traces the step) becomes one computation with several
outputs, as sibling nodes of the op SCAN that differ only in their attribute `out`:

    out 0 .. c-1          the carries after the last step (the shapes of init)
    out c .. c+n-1        the step's other results, stacked on a new leading axis (ys)
    out c+n .. 2c+n-1     the carries entering each step, stacked: what the backward
                          pass reads (autodiff/scan.py), computed only where it is read

The inputs are the initial carries, the sequences xs (sliced along their leading axis,
one slice a step) and the values of the enclosing graph the step reads (its weights),
which the step's graph has as inputs after the carries and the slices. Each target
prints the siblings that a function needs as one `for` loop calling the step's own
function (lower/scan.py), so a step is compiled once however many steps run.
"""
from __future__ import annotations

from .ir import GraphError
from .ops import apply, structural


def _output(attrs, k):
    """(shape, dtype, stacked) of sibling k."""
    body, c = attrs["body"], attrs["carries"]
    n = len(body.outputs) - c
    if k < c + n:
        node = body.outputs[k][1]
        return node.shape, node.dtype, k >= c
    node = body.inputs[k - c - n]
    return node.shape, node.dtype, True


def _shape(attrs, *shapes):
    shape, _, stacked = _output(attrs, attrs["out"])
    return ((attrs["length"],) + shape) if stacked else shape


def _dtype(attrs, *dtypes):
    return _output(attrs, attrs["out"])[1]


def _no_rule(*args, **kwargs):   # autodiff/scan.py puts the rule in its place
    raise GraphError("the scan's gradient rule is not loaded: import graphc.autodiff")


SCAN = structural("scan", None, _shape, _no_rule, dtype=_dtype, symbol="scan",
                  params=(("body", None), ("out", 0), ("carries", 0), ("xs", 0), ("length", 0),
                          ("reverse", False)))
SCAN.siblings = True


def loop(body, init, xs, consts, length, reverse=False):
    """The siblings of one scan (Tensors, in the order of `out`): `body`'s inputs are the
    carries (as many as `init`), one slice of each of `xs`, then `consts`; its outputs the
    new carries, then the values stacked into ys."""
    c, args = len(init), (*init, *xs, *consts)
    return [apply(SCAN, args, body=body, out=k, carries=c, xs=len(xs), length=length, reverse=reverse)
            for k in range(c + len(body.outputs))]

