"""Output paths, checked before the work that fills them.

A command that runs for minutes and then fails to write its results wastes the run; these
checks run first and turn the operating system's refusal into one ServesimError naming the
option. Missing parent folders are created (as the writers would), and removed again by
:func:`remove_created_parents` when the command fails before writing into them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from servesim.errors import ServesimError


def writable_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, once a folder can be created (or written into) there."""
    _refuse_empty(path, option)
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ServesimError(f"{out} exists and is not a folder", field=option)
    if out.is_dir():
        # Files go into the folder itself (staged inside it): its parent may be read-only
        # (``--out .`` in a home folder).
        if not os.access(out, os.W_OK | os.X_OK):
            raise cannot_write(out, PermissionError(13, "Permission denied"), option)
        _try_create(out, out, option)
    else:
        _check_parent(out, option)
    return out


def writable_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, once a file can be written there."""
    _refuse_empty(path, option)
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


def _refuse_empty(path: str | Path, option: str) -> None:
    # NOTE: Path("") is Path("."): an empty path (an unset variable) would write into the
    # current folder. The CLI refuses it while parsing (typer makes a Path of it at once).
    if isinstance(path, str) and not path.strip():
        raise ServesimError(
            "is empty (an unset variable?)", field=option, fix="give the path to write to"
        )


_created: list[Path] = []
"""Folders the checks created, deepest first, for :func:`remove_created_parents`.

NOTE: module state, on purpose: the checks run in the CLI's commands and the cleanup in its
entry point, one command per process; a check must create the folders to test them (write
permission is only known by trying)."""


def remove_created_parents() -> None:
    """Remove the folders the checks created that are still empty: a command that failed
    leaves no empty ``new/`` behind for ``-o new/cal.yaml``."""
    while _created:
        try:
            os.rmdir(_created.pop(0))
        except OSError:
            pass  # not empty (written since, or someone else's), or gone


def _check_parent(out: Path, option: str) -> None:
    parent = out.resolve().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise ServesimError(f"cannot write {out}: {existing} is a file", field=option)
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(out, err, option) from None
    finally:
        _created.extend(p for p in missing if p.is_dir())
    _try_create(out, parent, option)


def _try_create(out: Path, where: Path, option: str) -> None:
    """Create (and remove) a temporary folder in ``where``: the only test that holds on every
    filesystem (read-only mounts, ACLs, /proc); os.access is not."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.resolve().name}.", dir=where))
    except OSError as err:
        raise cannot_write(out, err, option) from None


@contextlib.contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """A text file that appears at ``path`` whole or not at all: written beside it, then
    renamed over it; removed on any error or interrupt.

    NOTE: not ``tempfile.mkstemp``, which makes the file private (0600): an output is meant to
    be shared, so it takes the process umask as any other file the CLI writes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
