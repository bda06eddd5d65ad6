"""Where generated modules live: the cache directory, writing a module (atomically, and
only when its text changed, so Numba's own cache stays valid), the index from a graph's
fingerprint to its module, and importing a module by path.

The cache must never stop a compile: an unwritable directory sends this process's
modules to a private temporary one (said once on stderr), a damaged index entry or a
damaged file of Numba's is dropped and rebuilt, and a graph's name, which names the
module's folder and file, is cut short (its hash keeps them apart)."""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import io
import os
import pickletools
import sys
import tempfile
from pathlib import Path

_FALLBACK = []   # the temporary directory used instead of an unwritable cache, once made


def cache_dir() -> Path:
    """GRAPHC_CACHE_DIR, else $XDG_CACHE_HOME/graphc or ~/.cache/graphc; with no home
    directory at all (a container's arbitrary user), a folder of this user's in the
    system's temporary directory."""
    if _FALLBACK:
        return _FALLBACK[0]
    if os.environ.get("GRAPHC_CACHE_DIR"):
        return Path(os.environ["GRAPHC_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "graphc"
    home = os.path.expanduser("~")
    if home == "~":   # neither HOME nor a password entry
        return Path(tempfile.gettempdir()) / f"graphc-{getattr(os, 'getuid', lambda: 'user')()}"
    return Path(home) / ".cache" / "graphc"


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def module_path(name: str, source: str) -> Path:
    """Where the module of graph `name` with this text lives in the cache: a folder and a
    file named after the graph (its first 48 bytes: a file name may hold 255) and the text."""
    short = name.encode()[:48].decode(errors="ignore")
    return cache_dir() / f"{short}_{source_hash(source)}" / f"{short}_graphc.py"


def store(name: str, source: str) -> Path:
    """Write the module of graph `name` into the cache; where the cache directory cannot be
    written, into a private temporary directory for the rest of this process."""
    try:
        return write(source, module_path(name, source))
    except OSError as e:
        if _FALLBACK:
            raise
        where = cache_dir()
        _FALLBACK.append(Path(tempfile.mkdtemp(prefix="graphc-")))
        print(f"graphc: cannot write to the cache directory {where} ({e.strerror or e}); this process "
              f"writes its modules to {_FALLBACK[0]} instead. Set GRAPHC_CACHE_DIR to a writable "
              "directory to keep them.", file=sys.stderr)
        return write(source, module_path(name, source))


def write(source: str, path: Path) -> Path:
    """Write the module unless the same text is already there (keeps Numba's cache valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = source.encode()
    if not path.exists() or path.read_bytes() != data:   # bytes: a damaged file may not decode
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)   # atomic: a concurrent reader never sees half a module
    return path


def remember(key: str, path: Path, source: str):
    """Record that the graph fingerprinted as `key` (fingerprint.py) has its module at `path`
    (where the index cannot be written, the next compile generates the module again)."""
    try:
        write(f"{Path(path).resolve()}\n{source_hash(source)}\n", cache_dir() / "keys" / key)
    except OSError:
        pass


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
    _drop_damaged_numba_cache(Path(path))
    # an explicit loader: spec_from_file_location gives None for a name not ending in .py
    spec = importlib.util.spec_from_file_location(
        name, path, loader=importlib.machinery.SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _drop_damaged_numba_cache(path: Path):
    """Numba's cache of the module (`__pycache__/<stem>.<function>-<line>.py3xx.nbi`, an
    index of two pickles, and its `.nbc` data files, one pickle each) checked for damage
    without unpickling (which would import the module, and costs as much as loading it): a
    function whose files are not whole pickles loses them, and Numba compiles it again
    rather than failing at every call."""
    folder = path.parent / "__pycache__"
    if not folder.is_dir():
        return
    for index in folder.glob(f"{path.stem}.*.nbi"):
        data = sorted(folder.glob(f"{index.name[:-4]}.*.nbc"))
        if all(_whole_pickles(f, 2 if f is index else 1) for f in [index, *data]):
            continue
        for file in [index, *data]:
            try:
                file.unlink()
            except OSError:
                pass


def _whole_pickles(file: Path, count: int) -> bool:
    """Whether `file` holds exactly `count` complete pickles (read as opcodes, not run)."""
    try:
        stream = io.BytesIO(file.read_bytes())
        for _ in range(count):
            if [op.name for op, _, _ in pickletools.genops(stream)][-1:] != ["STOP"]:
                return False
        return not stream.read()
    except Exception:   # noqa: BLE001 (a damaged pickle raises whatever its bytes lead to)
        return False
