"""The SymPy bridge: local derivatives of elementwise formulas, and printing.

SymPy's job is small and bounded. Each elementwise op is a scalar formula over
argument symbols; its partial derivatives come from `sympy.diff`, rewritten in
terms of the op's output where that is simpler (sigmoid' = y*(1-y)), and are
cached. Nothing here ever sees more than one op's formula at a time, and no SymPy
call here costs more for a constant with more digits (x ** 2.718281828459045).
Derivatives come out printable: a kink's DiracDelta and Heaviside become the numbers
the code computes.
"""
from __future__ import annotations

import functools

from .lazy import cfunctions, sp


N_ARGS = 16   # how many inputs a formula may have


@functools.lru_cache(maxsize=None)
def symbols():
    """(ARGS, Y), made on first use (`import graphc` imports no SymPy: lazy.py). ARGS, the
    argument symbols _a0, _a1, ...: the underscore keeps them apart from the names of
    symbolic dimensions, which may not start with one. Y: the op's own output, in
    derivative rules. Read them as `symbolic.ARGS` and `symbolic.Y` (__getattr__ below)."""
    return tuple(sp.Symbol(f"_a{i}", real=True) for i in range(N_ARGS)), sp.Symbol("_y", real=True)


def __getattr__(name):
    """symbolic.ARGS, symbolic.Y and symbolic.log1p, on first use (PEP 562)."""
    if name in ("ARGS", "Y"):
        globals().update(zip(("ARGS", "Y"), symbols()))   # later reads find them in the module
        return globals()[name]
    if name == "log1p":
        return cfunctions.log1p
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=None)
def partials(formula, n_inputs):
    """d formula / d arg_i for each input, as expressions over ARGS and Y."""
    args = symbols()[0]
    return tuple(prefer_output_form(sp.diff(formula, args[i]), formula, n_inputs)
                 for i in range(n_inputs))


def printable(derivative):
    """`derivative` with SymPy's distributions replaced by the values the code computes.

    A kink's derivative (abs' = sign, Max(0, x)' = Heaviside(x)) is a distribution to
    SymPy, and its derivative in turn (sign' = 2*DiracDelta). No target prints those;
    away from the kink the derivative is what autograd and PyTorch give: DiracDelta (and
    its derivatives) is 0, Heaviside a step (see `step`). Anything else SymPy leaves
    unevaluated (Subs, Derivative) stays, so that the Printer names it.
    """
    out = derivative.replace(sp.DiracDelta, lambda *args: sp.S.Zero)
    out = out.replace(sp.Heaviside, step)
    # sign' where SymPy could not say its argument is real: still 0 away from the kink
    out = out.replace(lambda e: isinstance(e, sp.Derivative) and isinstance(e.expr, sp.sign),
                      lambda e: sp.S.Zero)
    return out


def step(arg, at_zero=None):
    """Heaviside(arg): 1 above 0, 0 below, `at_zero` at 0 (None: SymPy's default, 1/2).

    1/2 is the value that agrees with sign(0) = 0, abs' at its kink: where kinks cancel in
    a smooth formula (softplus's stable rule holds Min(x, 0) and Abs(x)), the half-steps
    add up to the true derivative (softplus''(0) = 1/4, not 0, which broke Newton's
    method started at w = 0). The rules written for the routing gates (relu, max) keep
    their own ties; this is only for steps SymPy derives.
    """
    if at_zero is None or at_zero == sp.S.Half:
        return (1 + sp.sign(arg)) / 2
    return sp.Piecewise((1, arg > 0), (0, arg < 0), (at_zero, True))


# Above this many operations a derivative is printed as SymPy gives it: simplify's cost
# grows fast with size, and the output form pays off for one op's small formula.
MAX_OPS = 40


def prefer_output_form(derivative, formula, n_inputs):
    """Rewrite a derivative in terms of the output Y where that is simpler.

    Candidates: the whole formula replaced by Y inside the derivative, and, for a
    one-input formula whose input occurs once (so it has a single inverse), the
    derivative at x = f^-1(Y). A candidate is kept only when it is provably equal
    and has no more operations than the plain derivative.
    """
    derivative = printable(derivative)
    if derivative.is_number:
        return derivative
    if max(sp.count_ops(derivative), sp.count_ops(formula)) > MAX_OPS:
        return derivative
    # solve and simplify turn a Float into an exact Rational, and their cost grows with
    # its digits (x**2.718281828459045 ran out of memory): they see a symbol instead
    back, (derivative_s, formula_s) = _constants_as_symbols(derivative, formula)
    best = _output_form(derivative_s, formula_s, n_inputs)
    return derivative if best is derivative_s else best.xreplace(back)


def _is_small(number):
    """A number SymPy's algebra handles in no time: a small integer or fraction."""
    return number.is_Rational and abs(number.p) <= 100 and number.q <= 100


def _constants_as_symbols(*exprs):
    """`exprs` with every Float and large Rational replaced by a positive symbol (times
    -1 for a negative one, so that simplify still knows each number's sign), and the
    mapping that puts the numbers back."""
    numbers = {n for e in exprs for n in e.atoms(sp.Float, sp.Rational)}   # finite: not oo, zoo, nan
    magnitudes = sorted({abs(n) for n in numbers if n != 0 and not _is_small(n)}, key=float)
    symbols = {m: sp.Dummy(f"c{k}", positive=True) for k, m in enumerate(magnitudes)}
    if not symbols:
        return {}, exprs
    forward = {n: symbols[abs(n)] * (1 if n > 0 else -1) for n in numbers if abs(n) in symbols}
    return {s: m for m, s in symbols.items()}, tuple(e.xreplace(forward) for e in exprs)


def _output_form(derivative, formula, n_inputs):
    """The simplest provably equal form of `derivative`, preferring one in terms of Y."""
    args, Y = symbols()
    x = args[0]
    candidates = [derivative.subs(formula, Y)]
    if n_inputs == 1 and formula.count(x) == 1:
        try:
            inverses = sp.solve(sp.Eq(Y, formula), x, check=False)  # verified below
        except (NotImplementedError, ValueError, TypeError):
            inverses = []
        if len(inverses) == 1:
            candidates.append(derivative.subs(x, inverses[0]))
    best, best_ops = derivative, sp.count_ops(derivative)
    for cand in candidates:
        if Y not in cand.free_symbols:
            continue
        simplified = sp.simplify(cand)
        for form in (cand, simplified, sp.expand(simplified), sp.factor(simplified)):
            ops = sp.count_ops(form)
            if ops < best_ops or (ops == best_ops and Y not in best.free_symbols):
                if sp.simplify(form.subs(Y, formula) - derivative) == 0:
                    best, best_ops = form, ops
    return best


# ---- printing ---------------------------------------------------------------
# A small printer with a table per target (each backend's `functions`), rather than
# SymPy's NumPyPrinter, whose output (`x**(-1.0)`, `numpy.select(...)`) is not what a
# lecture shows.

_PREC_ATOM, _PREC_POW, _PREC_UNARY, _PREC_MUL, _PREC_ADD, _PREC_CMP = 100, 60, 50, 40, 30, 20
_RELATIONS = {"StrictGreaterThan": ">", "StrictLessThan": "<", "GreaterThan": ">=",
              "LessThan": "<=", "Equality": "==", "Unequality": "!="}


class Printer:
    """Prints a SymPy expression as target code. `names` maps symbols to text."""

    def __init__(self, functions, names, number=repr, literal=None):
        self.functions = functions
        self.names = names
        self.number = number
        self.literal = literal   # wraps every numeric literal (np.float32(...) keeps float32 code float32)

    def __call__(self, expr):
        return self._print(expr)[0]

    def _one(self):
        """The numerator of a reciprocal: typed where numbers are (1/x stays float32)."""
        return self.literal(self.number(1.0)) if self.literal is not None else "1"

    def _wrap(self, expr, prec):
        text, p = self._print(expr)
        return f"({text})" if p < prec else text

    def _print(self, e):
        if self.literal is not None and e.is_number and not e.free_symbols and e.is_real:
            return self.literal(self.number(float(e))), _PREC_ATOM
        if e.is_Symbol:
            return self.names[e], _PREC_ATOM
        if e.is_Integer:
            return str(int(e)), (_PREC_UNARY if int(e) < 0 else _PREC_ATOM)
        if e.is_Rational:
            return f"{e.p}/{e.q}" if e.p > 0 else f"-{-e.p}/{e.q}", _PREC_MUL
        if e.is_Float or e.is_number and e.is_real and not e.free_symbols:
            value = float(e)
            return self.number(value), (_PREC_UNARY if value < 0 else _PREC_ATOM)
        if e is sp.true:
            return "True", _PREC_ATOM
        if e.is_Add:
            return self._print_add(e)
        if e.is_Mul:
            return self._print_mul(e)
        if e.is_Pow:
            return self._print_pow(e)
        cls = type(e).__name__
        if cls in _RELATIONS:
            return (f"{self._wrap(e.lhs, _PREC_ADD)} {_RELATIONS[cls]} "
                    f"{self._wrap(e.rhs, _PREC_ADD)}"), _PREC_CMP
        if cls == "Piecewise":
            return self._print_piecewise(e)
        if cls in ("Max", "Min"):
            fn = self.functions[cls]
            args = [self._choice(a) for a in e.args]
            text = args[-1]
            for a in reversed(args[:-1]):   # Max(a, b, c) -> maximum(a, maximum(b, c))
                text = f"{fn}({a}, {text})"
            return text, _PREC_ATOM
        if cls in self.functions:
            args = ", ".join(self._print(a)[0] for a in e.args)
            return f"{self.functions[cls]}({args})", _PREC_ATOM
        raise NotImplementedError(f"graphc cannot print the SymPy function {cls!r} for this target")

    def _print_add(self, e):
        terms = e.as_ordered_terms()
        out = self._print(terms[0])
        text = self._wrap(terms[0], _PREC_ADD) if out[1] < _PREC_ADD else out[0]
        for t in terms[1:]:
            coeff, rest = t.as_coeff_Mul()
            if coeff.is_number and coeff < 0:
                text += f" - {self._wrap(-t, _PREC_MUL + 1)}"
            else:
                text += f" + {self._wrap(t, _PREC_ADD + 1)}"
        return text, _PREC_ADD

    def _print_mul(self, e):
        coeff, rest = e.as_coeff_Mul()
        if coeff == -1:
            # -y*(y - 1) reads better as y*(1 - y): fold the sign into a sum
            factors = sp.Mul.make_args(rest)
            for k, f in enumerate(factors):
                if f.is_Add:
                    flipped = sp.Mul(*factors[:k], sp.Add(*[-t for t in f.args], evaluate=False),
                                     *factors[k + 1:], evaluate=False)
                    return self._print_mul_factors(sp.Mul.make_args(flipped))
            return f"-{self._wrap(rest, _PREC_UNARY)}", _PREC_UNARY
        return self._print_mul_factors(sp.Mul.make_args(e))

    def _print_mul_factors(self, factors):
        num, den = [], []
        for f in factors:
            if f.is_Pow and f.exp.is_number and f.exp < 0:
                den.append(f.base if f.exp == -1 else sp.Pow(f.base, -f.exp))
            elif f.is_Rational and not f.is_Integer and f != 0:
                if abs(f.p) != 1:
                    num.append(sp.Integer(f.p))
                elif f.p < 0:
                    num.append(sp.Integer(-1))
                den.append(sp.Integer(f.q))
            else:
                num.append(f)
        if num and num[0] == -1 and len(num) > 1:
            inner = sp.Mul(*num[1:]) / sp.Mul(*den) if den else sp.Mul(*num[1:])
            return f"-{self._wrap(inner, _PREC_UNARY)}", _PREC_UNARY
        text = "*".join(self._wrap(f, _PREC_MUL) for f in num) if num else self._one()
        if len(den) == 1:
            text += f"/{self._wrap(den[0], _PREC_MUL + 1)}"
        elif den:
            text += f"/({'*'.join(self._wrap(d, _PREC_MUL) for d in den)})"
        return text, _PREC_MUL

    def _print_pow(self, e):
        base, exp = e.args
        if exp == -1:
            return f"{self._one()}/{self._wrap(base, _PREC_MUL + 1)}", _PREC_MUL
        if exp == sp.Rational(1, 2):
            return f"{self.functions['sqrt']}({self._print(base)[0]})", _PREC_ATOM
        if exp.is_Integer and exp > 0:
            return f"{self._wrap(base, _PREC_POW + 1)}**{int(exp)}", _PREC_POW
        return f"{self._wrap(base, _PREC_POW + 1)}**{self._wrap(exp, _PREC_POW + 1)}", _PREC_POW

    def _choice(self, value):
        """A value that a choice (where, max, min) may return: a whole number as a float
        (1.0), so that the result is a float as the rest of the code is, not an int (NumPy
        would make an int array of `where(c, 1, 0)`, Python's max(0, x) an int)."""
        return self._print(sp.Float(value) if value.is_Integer else value)[0]

    def _print_piecewise(self, e):
        pieces = list(e.args)
        text = self._choice(pieces[-1].expr)
        if pieces[-1].cond is not sp.true:
            raise NotImplementedError("a Piecewise needs a final (value, True) branch")
        fn = self.functions["where"]
        for piece in reversed(pieces[:-1]):
            cond, value = self._print(piece.cond)[0], self._choice(piece.expr)
            # a target whose `where` is a pattern (Numba's scalar `(a if c else b)`) fills it in
            text = fn.format(c=cond, a=value, b=text) if "{" in fn else f"{fn}({cond}, {value}, {text})"
        return text, _PREC_ATOM


__all__ = ["ARGS", "Y", "N_ARGS", "symbols", "partials", "printable", "step", "prefer_output_form", "Printer", "log1p"]
