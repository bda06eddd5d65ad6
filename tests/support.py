"""Shared by the tests: the lecture examples, imported by path."""
import functools
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@functools.lru_cache(maxsize=None)
def example(name):
    """Import examples/<name>.py by path (its __main__ block does not run)."""
    spec = importlib.util.spec_from_file_location(f"graphc_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
