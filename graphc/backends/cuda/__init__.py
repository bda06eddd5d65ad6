"""The cuda target: the same program for numba-cuda, each fused group one kernel, the
other array ops small kernels or views (kernels.py), matrix products a tiled kernel or
cuBLAS (helpers.py); host functions keep device arrays on the device."""
from __future__ import annotations

from ...lower.scan import scan_printer
from ..base import OPERATORS, Target, check_called, dtype_of, reserve_loop_names
from . import conv, integers, kernels
from .scalar import FUNCTIONS

# Elementwise ops are printed inside kernels (kernels.py), as scalars; the rest are
# kernels, views or module helpers.
OPS = {**OPERATORS, **kernels.TABLE, **conv.TABLE, **integers.TABLE,
       # a scan's loop runs on the host, its steps' arrays on the device
       "scan": scan_printer(lambda node, ctx: f"__empty({ctx.target.shape(node.shape, ctx)}, "
                                              f"dtype={ctx.np}.{dtype_of(node, ctx)})")}

# Module names and builtins that the kernels, the host code and the per-example calls use:
# a value with one of these names would hide it inside the generated functions.
CALLED = ("abs", "cuda", "math", "range")


def _reserve(namer, user):
    check_called("cuda", CALLED, user)
    return reserve_loop_names(namer, user)


TARGET = Target("cuda", "cuda/module.py.j2", FUNCTIONS, OPS, fuses=True, typed_literals=True,
                group_statements=kernels.group_statements, reserve=_reserve, per_example=True,
                device_arrays=True, runtime=(("numba", "numba.cuda"), "pip install 'graphc[cuda]'"),
                summary="kernels for NVIDIA GPUs (pip install 'graphc[cuda]')")
