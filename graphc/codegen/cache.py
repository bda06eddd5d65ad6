"""Where generated modules live: the cache directory, writing a module (atomically, and
only when its text changed, so Numba's own cache stays valid), the index from a graph's
fingerprint to its module, and importing a module by path."""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    base = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "graphc")
    return Path(base)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def write(source: str, path: Path) -> Path:
    """Write the module unless the same text is already there (keeps Numba's cache valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)   # atomic: a concurrent reader never sees half a module
    return path


def remember(key: str, path: Path, source: str):
    """Record that the graph fingerprinted as `key` (fingerprint.py) has its module at `path`."""
    write(f"{Path(path).resolve()}\n{source_hash(source)}\n", cache_dir() / "keys" / key)


def remembered(key: str):
    """(path, source) of the module recorded under `key`, or None: none recorded, or the file
    is gone or no longer holds the text that was written (someone edited it)."""
    try:
        path, digest = (cache_dir() / "keys" / key).read_text().splitlines()
        source = Path(path).read_text()
    except (OSError, ValueError):
        return None
    return (Path(path), source) if source_hash(source) == digest else None


def load(path: Path, source: str):
    """Import the module at `path` under a name unique to its text."""
    name = f"graphc_generated_{Path(path).stem}_{source_hash(source)}"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    # an explicit loader: spec_from_file_location gives None for a name not ending in .py
    spec = importlib.util.spec_from_file_location(
        name, path, loader=importlib.machinery.SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
