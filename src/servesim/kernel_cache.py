"""Whether this machine's numba cache already holds servesim's compiled kernels, known without
importing numba.

``compiled: auto`` weighs what the kernels cost a process against what they save. Loaded from
numba's cache they cost ~0.3 s (numba's import and the cached machine code), which a run of a
few thousand requests already earns back; compiled afresh (the first compiled run of an
install) they cost ~10–16 s on a 2-core VM, which only a run of tens of thousands of requests
earns back. numba's cache has no public "is this cached" query, and importing numba to ask
would itself cost most of the 0.3 s, so a compiled run leaves a small marker beside the kernels
(:func:`record_kernels_cached`) stamped with everything numba's cache is keyed on: numba's
version, the interpreter, the machine, the cache directory setting, and each kernel module's
modification time and size (numba recompiles a function whose source file's stamp changed).
A marker whose stamp differs from the install's now (a new numba, an edited module) reads as
"not cached".
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent

KERNEL_SOURCES = (
    "cost/_compiled_kernels.py",
    "cost/step.py",
    "engine/_commit_kernels.py",
    "fused_kernels.py",
)
"""The modules whose functions numba compiles with ``cache=True`` (``cost/step.py``: the two
functions ``_compiled_kernels`` compiles from it), relative to the package."""

MARKER = _PACKAGE / "__pycache__" / "servesim-kernels-cached.json"
"""Where the marker lives: a ``__pycache__`` directory, where numba's own cache files go (and
go away with it)."""


def _stamp() -> dict[str, Any] | None:
    """What numba's cache of the kernels is valid for, now (None when it cannot be told:
    numba not installed, a kernel module missing, or numba's JIT disabled)."""
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return None
    try:
        numba_version = importlib.metadata.version("numba")
        sources = {}
        for name in KERNEL_SOURCES:
            stat = (_PACKAGE / name).stat()
            sources[name] = [stat.st_mtime_ns, stat.st_size]
    except (importlib.metadata.PackageNotFoundError, OSError):
        return None
    return {
        "numba": numba_version,
        "python": sys.implementation.cache_tag,
        "machine": platform.machine(),
        "cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
        "sources": sources,
    }


def kernels_cached() -> bool:
    """Whether a compiled run on this install left the kernels in numba's cache (the marker's
    stamp is the install's now, and, where numba keeps its cache beside the modules, each
    kernel module's ``__pycache__`` still holds an index of it: a folder cleaned since reads
    as "not cached"). A run then loads them in ~0.3 s instead of compiling them."""
    try:
        recorded = json.loads(MARKER.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stamp = _stamp()
    if stamp is None or recorded != stamp:
        return False
    return bool(stamp["cache_dir"]) or all(_has_index(name) for name in KERNEL_SOURCES)


def _has_index(source: str) -> bool:
    """Whether the ``__pycache__`` beside ``source`` holds a numba cache index of one of its
    functions (``<module>.<function>-<line>.<python tag>.nbi``, numba's naming)."""
    path = _PACKAGE / source
    try:
        names = os.listdir(path.parent / "__pycache__")
    except OSError:
        return False
    return any(n.startswith(f"{path.stem}.") and n.endswith(".nbi") for n in names)


def record_kernels_cached() -> None:
    """Leave the marker after a compiled run (numba wrote the kernels it compiled to its cache
    as it compiled them). Written whole or not at all; silently skipped where the package's
    directory is read-only (numba's cache then lives elsewhere, and ``auto`` keeps its large
    threshold there)."""
    stamp = _stamp()
    if stamp is None:
        return
    text = json.dumps(stamp, sort_keys=True)
    partial = MARKER.with_name(f"{MARKER.name}.{os.getpid()}.tmp")
    try:
        if MARKER.is_file() and MARKER.read_text(encoding="utf-8") == text:
            return
        MARKER.parent.mkdir(exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, MARKER)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


__all__ = ["KERNEL_SOURCES", "MARKER", "kernels_cached", "record_kernels_cached"]
