"""Declaring an elementwise op by its scalar SymPy formula, and the two derivative rules
every elementwise op shares: the VJP (g * d op / d input_i, one fused node per input) and
the JVP (sum_i t_i * d op / d input_i, one fused node), both from the partials SymPy
derives (symbolic.partials) or the op states."""
from __future__ import annotations

import functools
import inspect
import numbers

from . import symbolic
from .ir import GraphError
from .lazy import sp
from .ops import EXPR, Op, apply, expr, register


def elementwise(name, formula, partials=None, stable=None, ref=None, symbol=None, gate=None,
                nondiff=(), domain=None, register_op=True, lazy=False):
    """Declare an elementwise op from a scalar SymPy formula and return its function.

    `formula` is a lambda over SymPy symbols; parameters with defaults are static
    attributes (`lambda x, alpha=0.01: ...`). Its derivative comes from SymPy
    unless `partials` (a lambda over the same arguments plus the output `y`)
    gives the rules. `stable` is an equal formula that is printed instead where
    the textbook one overflows. The SymPy expressions are built at once, so that a
    formula SymPy cannot take fails on its line; `lazy=True` (graphc's own ops, in
    primitives.py and functions.py) builds them on first use, so that `import graphc`
    imports no SymPy.
    """
    sig = inspect.signature(formula)
    inputs = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty]
    params = tuple((p.name, p.default) for p in sig.parameters.values()
                   if p.default is not inspect.Parameter.empty)
    if len(inputs) > symbolic.N_ARGS:
        raise GraphError(f"op '{name}': at most {symbolic.N_ARGS} inputs")
    op = Op(name, "elementwise", len(inputs), params,
            functools.partial(_formulas, name, formula, partials, stable, len(inputs), params), ref=ref,
            symbol=symbol or name, gate=gate or "", nondiff=tuple(nondiff), domain=domain)
    if not lazy:
        op.build()
    op.vjp, op.jvp = _elementwise_vjp, _elementwise_jvp
    if register_op:
        register(op)
    return _op_function(op, inputs, lazy)


def _formulas(name, formula, partials, stable, n_inputs, params):
    """An op's SymPy expressions (Op.build): its formula, its stable form, its stated partials."""
    param_syms = [sp.Symbol(k, real=True) for k, _ in params]
    args = symbolic.ARGS[:n_inputs]
    try:
        expr = sp.sympify(formula(*args, *param_syms))
        explicit = None
        if partials is not None:
            explicit = tuple(sp.sympify(p) for p in partials(*args, *param_syms, symbolic.Y))
        stable_expr = sp.sympify(stable(*args, *param_syms)) if stable is not None else None
    except (TypeError, AttributeError, ValueError, sp.SympifyError) as e:
        raise GraphError(f"op '{name}': its formulas must be SymPy expressions of their arguments "
                         f"(sp.exp, not math.exp or np.exp): {e}") from None
    if explicit is not None and len(explicit) != n_inputs:
        raise GraphError(f"op '{name}': partials must give one rule per input")
    return expr, stable_expr, explicit


def _op_function(op, input_names, lazy):
    def fn(*args, **attrs):
        # arguments past the inputs are the attributes, in order (gc.leaky_relu(x, 0.1))
        extra = args[len(input_names):]
        if not extra or len(extra) > len(op.params):
            return apply(op, args, **attrs)   # too many arguments: apply says how many it takes
        args = args[:len(input_names)]
        for (key, _), value in zip(op.params, extra):
            if not isinstance(value, numbers.Real):
                raise GraphError(f"{op.name}: attribute {key} is a static number (a Python int or float), "
                                 f"not {type(value).__name__}: a graph value cannot take its place")
            if key in attrs:
                raise GraphError(f"{op.name}: attribute {key} given by position and by keyword")
            attrs[key] = value
        return apply(op, args, **attrs)
    fn.__name__ = op.name
    fn.op = op
    # a lazy op's formula is not built yet: the doc says where it is
    fn.__doc__ = (f"Elementwise {op.name}({', '.join(input_names)}" + "".join(f", {k}={v!r}" for k, v in op.params)
                  + (f"): its SymPy formula is {op.name}.op.formula" if lazy else f"): {op.formula}"))
    return fn


# ---- the elementwise VJP, shared by every elementwise op ------------------------

def _elementwise_vjp(g, y, *inputs, **attrs):
    """Contribution to input i: g * d op / d input_i, one fused EXPR node each."""
    node = y.node
    out = []
    for i in range(len(inputs)):
        if len(inputs) + 2 > symbolic.N_ARGS:   # a very wide sum: only the values its rule reads
            rule = _partial(node.op, node.attrs, len(inputs), i)
            out.append(None if rule is None else _term(rule, g, y, inputs))
            continue
        local = _local_gradient(node.op, node.attrs, len(inputs), i)
        out.append(None if local is None else expr(local, g, y, *inputs))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _local_gradient(op, attrs, n_inputs, i):
    """g * d op / d input_i over (g, y, inputs...): g and y come first, so SymPy's
    canonical order prints grad_s0*x0 as the lecture does. None: no gradient."""
    rule = _partial(op, attrs, n_inputs, i)
    if rule is None:
        return None
    shift = {symbolic.ARGS[k]: symbolic.ARGS[k + 2] for k in range(n_inputs)}
    return sp.piecewise_fold(symbolic.ARGS[0] * rule.xreplace({**shift, symbolic.Y: symbolic.ARGS[1]}))


# ---- the elementwise JVP (forward mode), shared likewise ------------------------

def _elementwise_jvp(tangents, y, *inputs, **attrs):
    """y's tangent, sum_i d op / d input_i * t_i, as one fused EXPR node: the forward-mode
    slide's tangent_s0 = tangent_w0*x0 + tangent_x0*w0. `tangents` has one entry per input
    (None: no tangent); a batched tangent (a Jacobian's basis) comes lifted to y's rank."""
    node = y.node
    used = tuple(i for i, t in enumerate(tangents)
                 if t is not None and _partial(node.op, node.attrs, len(inputs), i) is not None)
    if not used:
        return None
    ts = [tangents[i] for i in used]
    if len(used) + 1 + len(inputs) <= symbolic.N_ARGS:
        return expr(_tangent_formula(node.op, node.attrs, len(inputs), used), *ts, y, *inputs)
    total = None   # too many arguments for one formula (a very wide sum): a term each
    for i, t in zip(used, ts):
        term = _term(_partial(node.op, node.attrs, len(inputs), i), t, y, inputs)
        total = term if total is None else total + term
    return total


def _term(rule, t, y, inputs):
    """t * rule as a node of only the values the rule reads (a wide sum's rule reads none)."""
    reads = [(symbolic.Y, y)] + [(a, x) for a, x in zip(symbolic.ARGS, inputs)]
    reads = [(sym, value) for sym, value in reads if sym in rule.free_symbols]
    rename = {sym: symbolic.ARGS[k + 1] for k, (sym, _) in enumerate(reads)}
    return expr(symbolic.ARGS[0] * rule.xreplace(rename), t, *[value for _, value in reads])


@functools.lru_cache(maxsize=4096)
def _partial(op, attrs, n_inputs, i):
    """d op / d input_i over (inputs..., Y), or None where no derivative flows."""
    rule = op.partials_for(attrs, n_inputs)[i]
    return None if i in op.nondiff or rule == 0 else rule


@functools.lru_cache(maxsize=4096)
def _tangent_formula(op, attrs, n_inputs, used):
    """sum over `used` of t_i * d op / d input_i, over (t..., y, inputs...): the tangents come
    first, as the gradient does in a VJP line (tangent_w0*x0)."""
    m = len(used)
    shift = {symbolic.ARGS[k]: symbolic.ARGS[m + 1 + k] for k in range(n_inputs)}
    shift[symbolic.Y] = symbolic.ARGS[m]
    total = sp.Add(*[symbolic.ARGS[j] * _partial(op, attrs, n_inputs, i).xreplace(shift)
                     for j, i in enumerate(used)])
    return sp.piecewise_fold(total)


EXPR.vjp, EXPR.jvp = _elementwise_vjp, _elementwise_jvp
