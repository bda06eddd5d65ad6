"""gc.compile(..., tiered=True): results from the first call while Numba compiles.

Numba compiles a function at its first call, for the types of its arguments: seconds for a
small model, a minute for a conv net, while a training loop waits. A tiered function answers
that call, and every call until Numba is done, with the numpy target's module of the same
graph. Meanwhile another Python process imports the numba module and calls the function
with the same arguments, so that Numba compiles it there, on another core, and writes it to
its cache; then a thread of this process calls it too, which loads it from that cache, and
the function's calls go to Numba's machine code from then on. Each entry point (forward,
backward, value_and_grad) switches by itself.

Why a process: Numba's compiler is Python, and a thread compiling here would hold Python's
lock half the time a busy loop of numpy calls wants it (the micrograd MLP's compile took 2x as
long beside its training loop). Where the other process fails or Numba's cache cannot serve
(a cache folder that is not writable), the thread compiles here. A call with other types
than the first (another dtype or layout) compiles in the caller, as an untiered function's
would. The two modules compute the same function in another order here and there: results
agree to rounding, not bit for bit.
"""
from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

ENTRY_POINTS = ("forward", "backward", "value_and_grad")
COMPILING, READY, FAILED = "compiling", "ready", "failed"
_RUNNING = set()   # the compiling processes, stopped if this one exits first


class Tiers:
    """The numba module's entry points, each served by the numpy module's until Numba has
    compiled it; any other name is the numba module's own."""

    def __init__(self, interpreted, compiled, path, graph_name):
        self._interpreted, self._compiled, self._path, self._graph_name = interpreted, compiled, path, graph_name
        self._state, self._errors, self._threads = {}, {}, {}
        self._lock = threading.Lock()
        for name in ENTRY_POINTS:
            setattr(self, name, self._entry(name))

    def __getattr__(self, name):   # the per-example functions, the kernels: the numba module's
        return getattr(self._compiled, name)

    def serving(self, name):
        """'numba' once `name` runs Numba's machine code, else 'numpy'."""
        return "numba" if self._state.get(name) == READY else "numpy"

    def wait(self, timeout=None):
        """Wait for the compilations begun so far; True if none is still running."""
        for thread in list(self._threads.values()):
            thread.join(timeout)
        self._report()
        return not any(t.is_alive() for t in self._threads.values())

    def _entry(self, name):
        interpreted = getattr(self._interpreted, name)

        def call(*args, **kwargs):
            state = self._state.get(name)
            if state == READY:
                return getattr(self._compiled, name)(*args, **kwargs)
            if state is None:
                self._start(name, args, kwargs)
            elif state == FAILED:
                self._report()
            return interpreted(*args, **kwargs)
        call.__name__ = name
        return call

    def _start(self, name, args, kwargs):
        with self._lock:
            if name in self._state:
                return
            self._state[name] = COMPILING
        # copies: the caller may change its arrays (a parameter updated in place) meanwhile
        args = tuple(np.array(a) if isinstance(a, np.ndarray) else a for a in args)
        kwargs = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        thread = threading.Thread(target=self._compile, args=(name, args, kwargs), daemon=True,
                                  name=f"graphc: numba compiles {self._graph_name}.{name}")
        self._threads[name] = thread
        thread.start()

    def _compile(self, name, args, kwargs):
        try:
            _compile_elsewhere(self._path, name, args, kwargs)
            getattr(self._compiled, name)(*args, **kwargs)   # loaded from Numba's cache (or compiled)
        except Exception as e:   # noqa: BLE001  (told in the caller's thread, which goes on with numpy)
            self._errors[name] = f"{type(e).__name__}: {e}"
            self._state[name] = FAILED
        else:
            self._state[name] = READY

    def _report(self):
        """A warning, in the caller's thread and once, for each compilation that failed: the
        calls go on on the numpy module."""
        for name, error in list(self._errors.items()):
            del self._errors[name]
            warnings.warn(f"graph '{self._graph_name}': the numba target could not compile {name} "
                          f"({error.splitlines()[0]}); its calls go on on the numpy target", RuntimeWarning,
                          stacklevel=3)


def _compile_elsewhere(path, name, args, kwargs):
    """Another Python process calls `name` of the module at `path` with these arguments
    (saved to a file: their dtypes, shapes and C or F order, which are Numba's types), and
    Numba there writes what it compiles to its cache. Its failure is not this one's: the
    caller then compiles here."""
    folder = Path(tempfile.mkdtemp(prefix="graphc-tiers-"))
    try:
        saved = {f"arg{k}": a for k, a in enumerate(args)} | {f"kw_{k}": v for k, v in kwargs.items()}
        np.savez(folder / "arguments.npz", **saved)
        process = subprocess.Popen([sys.executable, "-m", "graphc.tiers", str(path), name, str(folder / "arguments.npz")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _RUNNING.add(process)
        try:
            process.wait()
        finally:
            _RUNNING.discard(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@atexit.register
def _stop_running():
    for process in list(_RUNNING):
        process.kill()


def _compile_here(path, name, arguments):
    """In the other process: import the module (under the name gc.compile gives it, which
    Numba's cache records) and make the call."""
    from .codegen import cache
    module = cache.load(Path(path), Path(path).read_text())
    with np.load(arguments) as saved:
        values = {key: saved[key][()] if saved[key].ndim == 0 else saved[key] for key in saved.files}
    args = [values[f"arg{k}"] for k in range(sum(key.startswith("arg") for key in values))]
    kwargs = {key[3:]: v for key, v in values.items() if key.startswith("kw_")}
    getattr(module, name)(*args, **kwargs)


if __name__ == "__main__":
    _compile_here(*sys.argv[1:4])
