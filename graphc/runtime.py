"""CompiledGraph: the generated module's functions, with argument checks around them.

Arguments are bound by position or name, converted to the compiled dtype (int64 for
an integer input, whose values are checked to be integers and, where it indexes an axis,
in range) and checked against the declared shapes (symbolic dimensions bound on the way);
scalar results come back as Python floats (float64) or NumPy float32 scalars.
A graph of scalars called with arrays runs once per example: the arrays are
broadcast together and each example goes through the scalar code (on the
compiled targets, the module's `*_each` functions; on NumPy, the flat code
itself, which is NumPy on arrays). CUDA device arrays pass through unconverted.

A CompiledGraph pickles as its module's text and its Signature, never its graph: the
receiver (another process, another machine) writes the text into its own cache and
imports it, so a function travels without the graph or the compiler's work.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import TARGETS
from .codegen import cache
from .graph import travel  # noqa: F401  (fills ir.BEHAVIOUR["pickle"]: graphs pickle where graphc is imported)
from .graph.ir import GraphError, format_shape, html_summary
from .tiers import ENTRY_POINTS, Tiers


def is_device_array(value):
    """A CUDA device array: numba-cuda's (whose simulator's arrays have copy_to_host only)
    or any other with the CUDA array interface (CuPy, PyTorch)."""
    return hasattr(value, "copy_to_host") or hasattr(value, "__cuda_array_interface__")


def numeric_array(value):
    """`value` as a NumPy array if it holds numbers (bools, ints, floats), else None: NumPy
    would turn None into nan and "2" into 2.0."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):   # ragged nested lists
        return None
    return array if array.dtype.kind in "biuf" else None


def is_scalar_graph(graph):
    """Scalars in, scalars out: such a graph also runs once per example over arrays."""
    return bool(graph.inputs) and all(n.shape == () for n in graph.inputs) and \
        all(n.shape == () for _, n in graph.outputs)


class Signature:
    """What the checks around a module read of its graph: the name, each input's and
    output's (name, shape, dtype), how forward returns, the indices' ranges, and whether
    the flat code runs on arrays. It travels where a compiled function is pickled."""

    def __init__(self, graph):
        self.name = graph.name
        self.inputs = tuple((n.name, n.shape, n.dtype) for n in graph.inputs)
        self.outputs = tuple((name, n.shape, n.dtype) for name, n in graph.outputs)
        self.output_kind = graph.output_kind
        self.per_example = is_scalar_graph(graph)
        self.ranges = {name: d[1] for name, d in graph.domains.items() if isinstance(d, tuple) and d[0] == "index"}
        self.vectorises = all(n.op.elementwise or n.op.kind in ("input", "const", "alias") for n in graph.nodes)


def _compiled_from(signature, target, dtype, wrt, source):
    """A pickled CompiledGraph, where it lands: the module's text written into this
    machine's cache (on the same machine, the sender's very file, so that Numba's cache of
    it serves every process there) and imported."""
    path = cache.store(signature.name, source)
    return CompiledGraph(signature, TARGETS[target], dtype, wrt, source, path, cache.load(path, source))


class CompiledGraph:
    """The compiled functions of one graph, with argument checks around them."""

    def __init__(self, graph, target, dtype, wrt, source, path, module):
        """`graph`: the Graph, or only its Signature (a function that was pickled)."""
        sig = graph if isinstance(graph, Signature) else Signature(graph)
        self._graph = None if sig is graph else graph
        self._sig = sig
        self.backend = target          # the Target (graphc.backends): what the module can do
        self.target = target.name
        self.dtype = dtype
        self.inputs = tuple(name for name, _, _ in sig.inputs)
        self.wrt = tuple(wrt)
        self.outputs = tuple(name for name, _, _ in sig.outputs)
        self.source = source
        self.path = Path(path)
        self.module = module
        self._np_dtype = np.dtype(dtype)
        self._out_shape = sig.outputs[0][1]
        self._per_example = sig.per_example
        # Numba's compiled scalar functions take and return Python floats as they are:
        # a call with floats only goes straight to them (the wrapper would cost ~10x the work)
        self.tiered = isinstance(module, Tiers)
        self._direct = (target.native_scalars and dtype == "float64" and self._per_example and not self.tiered
                        and sig.output_kind == "single" and all(d == "float" for _, _, d in sig.inputs))
        self._all_floats = (float,) * len(self.inputs)
        if self._direct:   # instance attributes: a call finds them before the checked methods
            self.forward = self._straight_to("forward", self.forward)
            self.value_and_grad = self._straight_to("value_and_grad", self.value_and_grad)
        # each input's declared shape as checks: a size, a symbol's name (bound by the call)
        # or None (an expression of other dims); printing a SymPy symbol at every call is slow
        self._declared = {name: tuple(_check_of(d) for d in shape) for name, shape in
                          [(name, shape) for name, shape, _ in sig.inputs] + [("grad_out", self._out_shape)]}
        # integer inputs come as int64 (and indices within their axis); integer outputs stay integers
        self._dtypes = {name: np.dtype(np.int64) if d == "int" else self._np_dtype for name, _, d in sig.inputs}
        self._ranges = {name: n for name, n in sig.ranges.items() if self._dtypes[name].kind == "i"}
        self._int_outputs = tuple(d == "int" for _, _, d in sig.outputs)
        self._vectorises = sig.vectorises

    @property
    def graph(self):
        if self._graph is None:
            raise GraphError(f"graph '{self._sig.name}': this compiled function was unpickled, and only its "
                             "module travels, not its graph; pickle the graph too where it is needed")
        return self._graph

    def __reduce__(self):   # a tiered function arrives untiered: the numba module alone
        return (_compiled_from, (self._sig, self.target, self.dtype, self.wrt, self.source))

    def serving(self, name="value_and_grad"):
        """The target whose code the next call of `name` runs: the compiled target, or for a
        tiered function (gc.compile(..., tiered=True)) 'numpy' until Numba has compiled it."""
        if name not in ENTRY_POINTS:
            raise GraphError(f"serving(): {name!r} is not a function of a compiled graph "
                             f"({', '.join(ENTRY_POINTS)})")
        return self.module.serving(name) if self.tiered else self.target

    def wait(self, timeout=None):
        """A tiered function: wait for Numba's compilations begun so far (True when none is
        running any more; False if `timeout` seconds passed first). Otherwise True at once."""
        return self.module.wait(timeout) if self.tiered else True

    def __repr__(self):
        return (f"<graphc.CompiledGraph {self._sig.name}({', '.join(self.inputs)}) "
                f"target={self.target}{' (tiered)' if self.tiered else ''} dtype={self.dtype}>")

    def _repr_svg_(self):   # in a notebook: the graph's diagram under a table, as a Graph shows
        return None if self._graph is None else self._graph._repr_svg_()

    def _repr_html_(self):
        rows = ([("input" + (", wrt" if name in self.wrt else ""), name, shape) for name, shape, _ in self._sig.inputs]
                + [("output", name, shape) for name, shape, _ in self._sig.outputs])
        return html_summary(f"{self._sig.name} compiled for {self.target} ({self.dtype}): {self.path}",
                            rows, self._repr_svg_())

    def _straight_to(self, name, checked):
        """`name` called with numbers goes straight to the machine code Numba compiled for
        float64 arguments: its entry point converts each argument as the checked path would
        (float(x)) and refuses arrays, None and a wrong count with a TypeError, after which
        the checked method runs (per-example calls, clear errors)."""
        dispatcher, floats, entry = getattr(self.module, name), self._all_floats, None

        def call(*args, **kwargs):
            nonlocal entry
            if entry is not None and not kwargs:
                try:
                    return entry(*args)
                except TypeError:
                    pass
            elif not kwargs and tuple(map(type, args)) == floats:   # the first call compiles
                result = dispatcher(*args)
                signature = next(sig for sig in dispatcher.signatures
                                 if all(str(t) == "float64" for t in sig))
                entry = dispatcher.overloads[signature].entry_point
                return result
            return checked(*args, **kwargs)
        call.__doc__ = checked.__doc__
        return call

    def _floats(self, args, kwargs):   # backward's seed makes it a Python wrapper: no entry point
        return self._direct and not kwargs and tuple(map(type, args)) == self._all_floats

    def forward(self, /, *args, **kwargs):   # `/`: an input may be called self
        values, dims, batch = self._bind("forward", args, kwargs)
        if batch is not None:
            return self._outputs(self._each("forward", values, batch))
        return self._outputs(self.module.forward(*values))

    __call__ = forward

    def backward(self, /, *args, grad_out=None, **kwargs):
        if grad_out is None and self._floats(args, kwargs):
            return self.module.backward(*args)
        values, dims, batch = self._bind("backward", args, kwargs)
        seed = self._seed("backward", grad_out, dims, required=self._out_shape != ())
        if batch is not None:
            return tuple(self._each("backward", values, batch, 1.0 if seed is None else seed))
        grads = self.module.backward(*values) if seed is None else self.module.backward(*values, grad_out=seed)
        return tuple(self._convert(g) for g in grads)

    def value_and_grad(self, /, *args, grad_out=None, **kwargs):
        values, dims, batch = self._bind("value_and_grad", args, kwargs)
        seed = self._seed("value_and_grad", grad_out, dims, required=self._out_shape != ())
        if batch is not None:
            if seed is None:
                value, grads = self._each("value_and_grad", values, batch)
            else:
                value, grads = self._each("forward", values, batch), self._each("backward", values, batch, seed)
            return self._outputs(value), tuple(grads)
        if seed is None:
            value, grads = self.module.value_and_grad(*values)
        elif self._out_shape == ():   # a scalar's value_and_grad is seeded with 1: scale by backward
            value, grads = self.module.forward(*values), self.module.backward(*values, grad_out=seed)
        else:
            value, grads = self.module.value_and_grad(*values, grad_out=seed)
        return self._outputs(value), tuple(self._convert(g) for g in grads)

    # -- per example
    def _each(self, fn, values, shape, seed=None):
        """The scalar code once per example of the broadcast `shape`."""
        n = int(np.prod(shape))
        flat = [np.ascontiguousarray(np.broadcast_to(v, shape), dtype=self._dtypes[name]).reshape(n)
                for name, v in zip(self.inputs, values)]
        if seed is not None:
            flat.append(np.ascontiguousarray(np.broadcast_to(seed, shape), dtype=self._np_dtype).reshape(n))
        compiled = getattr(self.module, fn + "_each", None)
        if compiled is not None:
            result = compiled(*flat)
        elif self._vectorises and self.backend.vectorised:   # the flat code is NumPy on arrays
            call = getattr(self.module, fn)
            result = call(*flat[:len(values)], grad_out=flat[-1]) if seed is not None else call(*flat)
        else:   # stacking inside, or nothing to differentiate: one call per example
            call = getattr(self.module, fn)
            rows = [call(*[a[k] for a in flat[:len(values)]], **({"grad_out": flat[-1][k]} if seed is not None
                                                                   else {}))
                    for k in range(n)]
            result = _stack(rows)
        return _reshape(result, n, shape, self._np_dtype)

    # -- argument handling
    def _fail(self, fn, message):
        raise GraphError(f"graph '{self._sig.name}': {fn}(): {message}")

    def _bind(self, fn, args, kwargs):
        """(values in input order, bound symbolic dimensions, the per-example shape or None)."""
        if len(args) > len(self.inputs):
            self._fail(fn, f"takes {len(self.inputs)} inputs ({', '.join(self.inputs)}), got {len(args)}")
        given = dict(zip(self.inputs, args))
        for k, v in kwargs.items():
            if k not in self.inputs:
                self._fail(fn, f"unexpected input {k!r} (inputs: {', '.join(self.inputs)})")
            if k in given:
                self._fail(fn, f"input {k!r} given twice")
            given[k] = v
        missing = [k for k in self.inputs if k not in given]
        if missing:
            self._fail(fn, f"missing input(s) {', '.join(missing)}")
        dims, values = {}, []
        for name, shape, _ in self._sig.inputs:
            values.append(self._convert_in(fn, name, given[name], shape, dims))
        if self._ranges:
            self._check_indices(fn, values, dims)
        batch = None
        if self._per_example and any(np.ndim(v) > 0 for v in values):
            try:
                batch = np.broadcast_shapes(*[np.shape(v) for v in values])
            except ValueError:
                shapes = ", ".join(f"{k}: {format_shape(np.shape(v))}" for k, v in zip(self.inputs, values))
                self._fail(fn, f"the per-example arrays do not broadcast together ({shapes})")
        return values, dims, batch

    def _convert_in(self, fn, name, value, shape, dims):
        declared, dtype = self._declared[name], self._dtypes.get(name, self._np_dtype)
        if type(value) is np.ndarray and value.ndim and value.dtype == dtype \
                and value.shape == declared:
            return value   # the common case, an array of its fixed shape: nothing to convert
        if is_device_array(value):   # a device array stays on the device
            if np.dtype(value.dtype) != dtype:
                self._fail(fn, f"input {name!r} is a {value.dtype} device array; this graph was "
                           f"compiled for {dtype}" + (" (gc.IntTensor)" if dtype.kind == "i" else ""))
            arr = value
        elif dtype.kind == "i":
            arr = self._integers(fn, name, value)
        else:
            arr = self._numeric(fn, name, value)
        per_example = self._per_example and shape == () and name != "grad_out"
        if not per_example and (len(arr.shape) != len(declared)
                                or not all(_dim_fits(d, n, dims) for d, n in zip(declared, arr.shape))):
            bound = ", ".join(f"{k}={v}" for k, v in dims.items())
            self._fail(fn, f"input {name!r} expects shape {format_shape(shape)}, got "
                       f"{format_shape(arr.shape)}" + (f" (with {bound})" if bound else ""))
        return arr[()] if arr.ndim == 0 and isinstance(arr, np.ndarray) else arr

    def _seed(self, fn, grad_out, dims, required):
        if grad_out is None:
            if required:
                out_name = self.outputs[0]
                self._fail(fn, f"output {out_name!r} has shape {format_shape(self._out_shape)}, not a "
                           "scalar: pass grad_out=, the gradient flowing into it (its shape)")
            return None
        if self._per_example:   # one seed per example, or one for all
            return self._numeric(fn, "grad_out", grad_out)
        return self._convert_in(fn, "grad_out", grad_out, self._out_shape, dims)

    def _numeric(self, fn, name, value):
        """`value` as an array of the compiled dtype, if it holds numbers (NumPy would turn
        None into nan and "2" into 2.0: both are refused)."""
        if type(value) is float or type(value) is int:   # numeric by its type: the common case
            return np.asarray(value, dtype=self._np_dtype)
        arr = numeric_array(value)
        if arr is None:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            self._fail(fn, f"input {name!r} must be a number or an array of numbers, got "
                       f"{type(value).__name__} {shown}")
        return arr.astype(self._np_dtype, copy=False)

    def _integers(self, fn, name, value):
        """An integer input's value as int64: integers only (a float array is refused, even
        one holding whole numbers: an index is not a measurement)."""
        if type(value) is int:
            return np.asarray(value, dtype=np.int64)
        arr = numeric_array(value)
        if arr is None or arr.dtype.kind not in "iu":
            what = f"{arr.dtype} values" if arr is not None else type(value).__name__
            self._fail(fn, f"input {name!r} is declared gc.IntTensor (int64): it takes integers, got {what}")
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            self._fail(fn, f"input {name!r}: {arr.max()} does not fit in int64")
        return arr.astype(np.int64, copy=False)

    def _check_indices(self, fn, values, dims):
        """Integer inputs that index an axis of size n (gc.take, x[idx]) lie in [-n, n): checked
        here, so that a wrong index is an error naming the input, not one from inside the module."""
        for name, value in zip(self.inputs, values):
            n = self._ranges.get(name)
            if n is None or is_device_array(value) or np.size(value) == 0:
                continue
            n = int(n.subs({s: dims[str(s)] for s in n.free_symbols})) if not isinstance(n, int) else n
            low, high = np.min(value), np.max(value)
            if low < -n or high >= n:
                bad = low if low < -n else high
                self._fail(fn, f"input {name!r} indexes an axis of size {n}: its values lie in [-{n}, {n}), "
                           f"got {bad}")

    def _convert(self, value, integer=False):
        if np.ndim(value) == 0:
            if integer:
                return int(value)
            return float(value) if self._np_dtype == np.float64 else self._np_dtype.type(value)
        return value

    def _outputs(self, value):
        if self._sig.output_kind == "single":
            return self._convert(value, self._int_outputs[0])
        if len(self.outputs) == 1:   # the module returns one value bare, even from a 1-tuple or dict
            value = (value,)
        values = tuple(self._convert(v, integer) for v, integer in zip(value, self._int_outputs))
        return dict(zip(self.outputs, values)) if self._sig.output_kind == "dict" else values


def _check_of(d):
    """How a declared dimension is checked: its size, its symbol's name, or None."""
    if isinstance(d, int):
        return d
    return str(d) if d.is_Symbol else None


def _dim_fits(declared, actual, dims):
    if declared is None:
        return True   # an expression of other dims: checked where they are declared
    if isinstance(declared, int):
        return declared == actual
    return dims.setdefault(declared, actual) == actual


def _stack(rows):
    """Per-example results (nested tuples of scalars) as nested tuples of arrays."""
    if isinstance(rows[0], tuple):
        return tuple(_stack([r[k] for r in rows]) for k in range(len(rows[0])))
    return np.asarray(rows)


def _reshape(result, n, shape, dtype):
    """Each leaf as an array of the per-example shape (a constant gradient is broadcast)."""
    if isinstance(result, tuple):
        return tuple(_reshape(r, n, shape, dtype) for r in result)
    if isinstance(result, np.ndarray) and result.shape == (n,) and result.dtype == dtype:
        return result.reshape(shape)   # a fresh array already: no copy
    return np.broadcast_to(np.asarray(result, dtype=dtype), (n,)).reshape(shape).copy()
