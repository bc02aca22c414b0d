"""Output paths, checked before the work that fills them.

A command that runs for minutes and then fails to write its results wastes the run; these
checks run first and turn the operating system's refusal into one ServesimError naming the
option. Missing parent folders are created (as the writers would).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from servesim.errors import ServesimError


def writable_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, once a folder can be created (or written into) there."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ServesimError(f"{out} exists and is not a folder", field=option)
    _check_parent(out, option)
    if out.exists() and not os.access(out, os.W_OK | os.X_OK):
        raise cannot_write(out, PermissionError(13, "Permission denied"), option)
    return out


def writable_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, once a file can be written there."""
    out = Path(path)
    if out.is_dir():
        raise ServesimError(f"{out} is a folder", field=option, fix="give a file name")
    _check_parent(out, option)
    if out.exists() and not os.access(out, os.W_OK):
        raise cannot_write(out, PermissionError(13, "Permission denied"), option)
    return out


def cannot_write(out: Path, err: OSError, option: str = "--out") -> ServesimError:
    """The one-line error for an output the system refused."""
    return ServesimError(
        f"cannot write {out}: {err.strerror or err}",
        field=option,
        fix="choose a place you can write to",
    )


def _check_parent(out: Path, option: str) -> None:
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise ServesimError(f"cannot write {out}: {parent} is a file", field=option)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Creating something is the only test that holds on every filesystem (read-only
        # mounts, ACLs, /proc); os.access on the parent is not.
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as err:
        raise cannot_write(out, err, option) from None
