"""Shared by the tests: the lecture examples, imported by path."""
import functools
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def script(folder, name):
    """Import <folder>/<name>.py by path as a fresh module (its __main__ block does not run)."""
    spec = importlib.util.spec_from_file_location(f"graphc_{folder}_{name}", ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def example(name):
    """examples/<name>.py, imported once."""
    return script("examples", name)


SIMULATED_CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def skip_on_simulated_cuda(target, what):
    """The CUDA simulator runs every GPU thread as Python: `what` (a real network or a
    training run) would take tens of minutes there. A GPU runs it; so do the small
    versions in tests/test_cuda_target.py."""
    if target == "cuda" and SIMULATED_CUDA:
        pytest.skip(f"{what} is too slow for the CUDA simulator (runs on a GPU)")
