"""Differentiation as graph transforms: reverse mode (reverse.py: backprop, gc.grad),
forward mode (forward.py: gc.jvp) and what is built from them (transforms.py:
gc.jacobian, gc.hessian, gc.hvp). Each takes a graph and returns a graph."""
from .reverse import Adjoint, backprop, backprop_seeds, differentiate, grad, resolve_wrt
from . import scan   # noqa: F401  (fills gc.scan's VJP rule, as forward.py fills the JVP table)
from .forward import jvp, push_forward
from .transforms import hessian, hvp, jacobian

__all__ = ["Adjoint", "backprop", "backprop_seeds", "differentiate", "grad", "resolve_wrt", "jvp", "push_forward",
           "jacobian", "hessian", "hvp"]
