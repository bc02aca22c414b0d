"""Engine release numbers compared as releases (``0.10.2`` < ``0.11.0rc1`` < ``0.11.0``).

One home for the ordering the kernel tables' collections (``cost/aic_tables.py``) and the
engine profiles' release rules (``engines.py``) both use. Imports nothing heavy.
"""

import re

_VERSION = re.compile(r"^(\d+(?:\.\d+)*)(?:\.?(dev|a|b|rc|post)(\d*))?")
_SUFFIX_RANK = {"dev": -3, "a": -2, "b": -1, "rc": -1, "": 0, "post": 1}


def version_key(name: str) -> tuple:
    """Sort key of a version folder name (``1.3.0rc20``, ``0.5.6.post2``, ``0.1.dev19262``):
    release numbers, then dev < rc < final < post. Unparsable names sort first."""
    m = _VERSION.match(name)
    if m is None:
        return ((), -9, 0)
    release = tuple(int(x) for x in m.group(1).split("."))
    suffix = m.group(2) or ""
    return (release, _SUFFIX_RANK[suffix], int(m.group(3) or 0))


def release_before(release: str, threshold: str) -> bool:
    """Whether ``release`` (a leading ``v`` allowed) comes before ``threshold``; missing
    trailing numbers count as zeros (``0.14`` is ``0.14.0``)."""

    def padded(name: str) -> tuple:
        numbers, suffix, number = version_key(name.lstrip("vV"))
        return (numbers + (0,) * (4 - len(numbers)), suffix, number)

    return padded(release) < padded(threshold)
