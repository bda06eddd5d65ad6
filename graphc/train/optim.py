"""Optimizers, whose update rules graphc compiles like any model.

    opt = gc.optim.Adam(lr=1e-3)
    for xb, yb in gc.data.minibatches(x, y, batch_size=64, rng=rng):
        loss, grads = fn.value_and_grad(xb, yb, **params)
        opt.step(params, grads)          # params: a dict of arrays, updated in place

Each optimizer writes its rule with graph ops (`rule` below, the lectures' formulas);
graphc compiles it (updates.py) once per set of parameter names and shapes into one
module on the model's target (`target=`, `dtype=`), where a target that fuses
elementwise ops makes it one loop per parameter.
`step` calls it and writes the results back with `p[...] = p_new`. On the cuda target
the state lives on the GPU, and parameters and gradients given as device arrays are
updated there (a device-to-device copy): a training loop that keeps its parameters on
the device (gc.to_device) moves none of them between host and device. Hyperparameters are
scalar inputs of that module, so a schedule (gc.schedules) changes the learning rate
without recompiling. With the same hyperparameters each class follows the same
trajectory as PyTorch's torch.optim class of the same name.
"""
from __future__ import annotations

import numpy as np

from ..graph.primitives import sqrt
from ..runtime import CompiledGraph, is_device_array
from .device import full, on_device, write
from .updates import CompiledUpdate, RunningAverages, compile_rule, run_rule, update_names


def _shape(a):
    return tuple(int(d) for d in getattr(a, "shape", ()))


def _dtype_of(arrays, dtype):
    if dtype is not None:
        return dtype
    kinds = {str(getattr(a, "dtype", "float64")) for a in arrays}
    return "float32" if kinds == {"float32"} else "float64"


def _write(params, name, value):
    """Store an update: in place into an array (a NumPy or a device array, whichever
    `value` is; nothing to copy when a rule updated the array itself, see device.write),
    or as a new value for a plain number."""
    target = params[name]
    if is_device_array(target) or (hasattr(target, "shape") and hasattr(target, "__setitem__")):
        write(target, value)
    else:
        params[name] = value


class Optimizer:
    """The common part: state, compilation per parameter signature, and `step`.

    A subclass gives `slots()` (its per-parameter state, zeros at the start),
    `scalars()` (the scalar inputs of this step, by name) and `rule(p, g, state, s)`,
    which returns p_new and the new state from graph values."""

    name = "optimizer"

    def __init__(self, lr, weight_decay=0.0, target="numpy", dtype=None):
        if not callable(lr) and not float(lr) > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive (or a schedule), got {lr!r}")
        self.lr = lr                  # a number, or a schedule: a function of the step count t
        self.weight_decay = float(weight_decay)
        self.target = target
        self.dtype = dtype
        self.t = 0                    # steps taken
        self.state = {}               # parameter name -> {slot: array}
        self._modules = {}            # (structure, names and shapes, dtype) -> compiled update
        self._by_arrays = {}          # the same, found by the arrays' names, shapes and dtypes

    def __repr__(self):
        return f"<graphc.optim.{type(self).__name__} lr={self.lr!r} t={self.t}>"

    # -- what each optimizer defines
    def slots(self):
        return ()

    def scalars(self):
        s = {"lr": self.learning_rate()}
        if self.weight_decay:
            s["weight_decay"] = self.weight_decay
        return s

    def structure(self):
        """What the compiled rule's statements depend on (besides names and shapes)."""
        return (tuple(self.slots()), tuple(self.scalars()))

    def rule(self, p, g, state, s):
        raise NotImplementedError

    def _decayed(self, p, g, s):
        """L2 weight decay as PyTorch adds it: the gradient gains weight_decay * p."""
        return g + s["weight_decay"] * p if "weight_decay" in s else g

    # -- the public part
    def learning_rate(self, t=None):
        """The learning rate at step t (default: the step about to be taken)."""
        t = self.t if t is None else t
        return float(self.lr(t)) if callable(self.lr) else float(self.lr)

    def step(self, params, grads):
        """Update `params` (a dict of name -> array) in place from `grads` (a dict of
        name -> gradient, or a sequence ordered like params). On the cuda target both may
        be device arrays (as value_and_grad returns for device inputs): the update then
        stays on the device."""
        grads = self._match(params, grads)
        module = self._module(params)
        scalars = self.scalars()
        if module.sources is not None and self._direct(module, params, grads, scalars):
            self.t += 1
            return
        args = {}
        for key, names in module.names.items():
            self._check(key, params[key])
            state = self._state_for(key, params[key], module.fn.dtype)
            args[names["p"]] = params[key]
            args[names["g"]] = grads[key]
            for slot in self.slots():
                args[names[slot]] = state[slot]
        for name, value in scalars.items():
            args[name] = value
        out = run_rule(module.fn, args)
        for key, names in module.names.items():
            _write(params, key, out[names["out"]["p"]])
            for slot in self.slots():
                _write(self.state[key], slot, out[names["out"][slot]])
        self.t += 1

    def _direct(self, module, params, grads, scalars):
        """The update through the module's `forward` itself, without CompiledGraph's argument
        binding and conversions (about 30 microseconds a step for six parameters), when
        every parameter, gradient and state array is a NumPy array of the rule's dtype and
        shape. Returns False, having written nothing, when one is not."""
        dtype, args = module.dtype, []
        for role, key in module.sources:
            if role == "scalar":
                args.append(dtype.type(scalars[key]))
                continue
            value = (params[key] if role == "p" else grads[key] if role == "g"
                     else self._state_for(key, params[key], module.fn.dtype)[role])
            if type(value) is not np.ndarray or value.dtype != dtype or value.shape != module.shapes[key]:
                return False
            if role == "p" and not value.flags.writeable:
                self._check(key, value)
            args.append(value[()] if value.ndim == 0 else value)   # a 0-d array as the number it holds
        results = module.fn.module.forward(*args)
        if len(module.results) == 1:   # a single output comes back bare
            results = (results,)
        for (role, key), value in zip(module.results, results):
            write(params[key] if role == "p" else self.state[key][role], value)
        return True

    def compile(self, params) -> CompiledGraph:
        """The compiled update for these parameters (read it: `.source`)."""
        return self._module(params).fn

    def zero_state(self):
        """Forget the state (velocities, caches, moments) and the step count."""
        self.state, self.t = {}, 0

    # -- internals
    def _match(self, params, grads):
        if not isinstance(params, dict) or not params:
            raise TypeError(f"{type(self).__name__}.step: params must be a non-empty dict of name -> array")
        if isinstance(grads, dict):
            missing = [k for k in params if k not in grads]
            extra = [k for k in grads if k not in params]
            if missing or extra:
                raise KeyError(f"{type(self).__name__}.step: the gradients do not match the parameters"
                               + (f"; missing {', '.join(map(str, missing))}" if missing else "")
                               + (f"; not parameters: {', '.join(map(str, extra))}" if extra else ""))
            return grads
        grads = tuple(grads)
        if len(grads) != len(params):
            raise ValueError(f"{type(self).__name__}.step: {len(grads)} gradients for "
                             f"{len(params)} parameters ({', '.join(map(str, params))})")
        return dict(zip(params, grads))

    def _check(self, name, p):
        """A parameter array the update cannot be written into is refused by name: an integer
        one would truncate it, a read-only one fail (deep inside Numba on the numba target)."""
        if isinstance(p, np.ndarray) or is_device_array(p):
            if np.dtype(p.dtype).kind != "f":
                raise TypeError(f"{type(self).__name__}.step: parameter {name!r} has dtype {p.dtype}; "
                                "parameters must be floating-point arrays (an update would be truncated)")
            if isinstance(p, np.ndarray) and not p.flags.writeable:
                raise ValueError(f"{type(self).__name__}.step: parameter {name!r} is a read-only array; "
                                 "the update is written into it (pass a writeable copy: p.copy())")

    def _state_for(self, key, p, dtype):
        state = self.state.setdefault(key, {})
        if len(state) == len(self.slots()):   # made at the first step
            return state
        shape = _shape(p)
        # on cuda the state stays on the GPU between steps; a scalar's is a kernel
        # argument, kept on the host
        make = full if on_device(self.target) and shape != () else np.full
        for slot in self.slots():
            if slot not in state:
                state[slot] = make(shape, self.initial(slot), dtype=dtype)
        return state

    def initial(self, slot):
        return 0.0

    def _module(self, params):
        # found by what the arrays are (cheap: at every step), built for what the rule needs
        key = (self.structure(), tuple((k, getattr(v, "shape", ()), getattr(v, "dtype", None))
                                       for k, v in params.items()))
        module = self._by_arrays.get(key)
        if module is None:   # new names, shapes or dtypes: checked once, here
            for name, p in params.items():
                self._check(name, p)
            dtype = _dtype_of(params.values(), self.dtype)
            signature = tuple((k, _shape(v)) for k, v in params.items())
            built = (self.structure(), signature, dtype)
            if built not in self._modules:
                self._modules[built] = self._build(signature, dtype)
            module = self._by_arrays[key] = self._modules[built]
        return module

    def _build(self, signature, dtype):
        slots, scalar_names = tuple(self.slots()), tuple(self.scalars())
        names = update_names([k for k, _ in signature], slots, scalar_names)
        inputs = [(names[key][role], shape) for key, shape in signature for role in ("p", "g") + slots]
        inputs += [(s, ()) for s in scalar_names]

        def update(x):
            s, outputs = {name: x[name] for name in scalar_names}, {}
            for key, _ in signature:
                n = names[key]
                p_new, new = self.rule(x[n["p"]], x[n["g"]], {slot: x[n[slot]] for slot in slots}, s)
                outputs[n["out"]["p"]] = p_new
                outputs.update((n["out"][slot], new[slot]) for slot in slots)
            return outputs

        # each parameter and state slot may take its new value in its own array
        in_place = {n["out"][role]: n[role] for n in names.values() for role in ("p",) + slots}
        fn = compile_rule(f"{self.name}_step", inputs, update, target=self.target, dtype=dtype,
                          in_place=in_place)
        return CompiledUpdate(fn, names, signature, slots, scalar_names)


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum and Nesterov momentum (PyTorch's form):

        v = momentum * v + dx                      (the lectures' v = rho * v + dx)
        x = x - lr * v                             (Nesterov: x - lr * (dx + momentum * v))

    weight_decay adds weight_decay * x to dx first (L2 regularisation)."""

    name = "sgd"

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, target="numpy", dtype=None):
        super().__init__(lr, weight_decay, target, dtype)
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def slots(self):
        return ("v",) if self.momentum else ()

    def scalars(self):
        s = super().scalars()
        if self.momentum:
            s["momentum"] = self.momentum
        return s

    def structure(self):
        return super().structure() + (self.nesterov,)

    def rule(self, p, g, state, s):
        g = self._decayed(p, g, s)
        if not self.momentum:
            return p - s["lr"] * g, {}
        v = s["momentum"] * state["v"] + g
        direction = g + s["momentum"] * v if self.nesterov else v
        return p - s["lr"] * direction, {"v": v}


class AdaGrad(Optimizer):
    """AdaGrad: cache = cache + dx**2; x = x - lr * dx / (sqrt(cache) + eps)."""

    name = "adagrad"

    def __init__(self, lr, eps=1e-10, weight_decay=0.0, initial_accumulator_value=0.0,
                 target="numpy", dtype=None):
        super().__init__(lr, weight_decay, target, dtype)
        self.eps = float(eps)
        self.initial_accumulator_value = float(initial_accumulator_value)

    def slots(self):
        return ("cache",)

    def initial(self, slot):
        return self.initial_accumulator_value

    def scalars(self):
        return {**super().scalars(), "eps": self.eps}

    def rule(self, p, g, state, s):
        g = self._decayed(p, g, s)
        cache = state["cache"] + g * g
        return p - s["lr"] * g / (sqrt(cache) + s["eps"]), {"cache": cache}


class RMSProp(Optimizer):
    """RMSProp: cache = decay * cache + (1 - decay) * dx**2; x = x - lr * dx / (sqrt(cache) + eps).
    (PyTorch's RMSprop with alpha = decay.)"""

    name = "rmsprop"

    def __init__(self, lr, decay=0.9, eps=1e-8, weight_decay=0.0, target="numpy", dtype=None):
        super().__init__(lr, weight_decay, target, dtype)
        if not 0 <= decay < 1:
            raise ValueError(f"RMSProp: decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.eps = float(eps)

    def slots(self):
        return ("cache",)

    def scalars(self):
        return {**super().scalars(), "decay": self.decay, "eps": self.eps}

    def rule(self, p, g, state, s):
        g = self._decayed(p, g, s)
        cache = s["decay"] * state["cache"] + (1 - s["decay"]) * g * g
        return p - s["lr"] * g / (sqrt(cache) + s["eps"]), {"cache": cache}


RMSprop = RMSProp   # PyTorch's spelling


class Adam(Optimizer):
    """Adam, with bias correction (t counts the steps from 1):

        m = beta1 * m + (1 - beta1) * dx           v = beta2 * v + (1 - beta2) * dx**2
        mt = m / (1 - beta1**t)                    vt = v / (1 - beta2**t)
        x = x - lr * mt / (sqrt(vt) + eps)

    weight_decay adds weight_decay * x to dx first (PyTorch's Adam; see AdamW)."""

    name = "adam"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 target="numpy", dtype=None):
        super().__init__(lr, weight_decay, target, dtype)
        for label, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ValueError(f"{type(self).__name__}: {label} must be in [0, 1), got {b}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def slots(self):
        return ("m", "v")

    def scalars(self):
        return {**super().scalars(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "t": float(self.t + 1)}

    def rule(self, p, g, state, s):
        g = self._decayed(p, g, s)
        return self._adam(p, g, state, s)

    def _adam(self, p, g, state, s):
        m = s["beta1"] * state["m"] + (1 - s["beta1"]) * g
        v = s["beta2"] * state["v"] + (1 - s["beta2"]) * g * g
        mt = m / (1 - s["beta1"] ** s["t"])
        vt = v / (1 - s["beta2"] ** s["t"])
        return p - s["lr"] * mt / (sqrt(vt) + s["eps"]), {"m": m, "v": v}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): x = x * (1 - lr * weight_decay)
    before the Adam step, as PyTorch's AdamW (whose default weight_decay is 0.01)."""

    name = "adamw"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
                 target="numpy", dtype=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, target, dtype)

    def rule(self, p, g, state, s):
        if "weight_decay" in s:
            p = p * (1 - s["lr"] * s["weight_decay"])
        return self._adam(p, g, state, s)


__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "RMSprop", "Adam", "AdamW", "RunningAverages"]
