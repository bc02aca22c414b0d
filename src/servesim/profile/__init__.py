"""A tiny, fail-silent Chrome-trace recorder for real serving stacks.

>>> from servesim.profile import span, instant, counter, step
>>> with span("forward", args={"batch": 8}):
...     pass

Off unless ``SERVESIM_PROFILE=1`` (then a call costs well under a microsecond of nothing);
when on, each process buffers its records and appends them to one fragment file in
``SERVESIM_PROFILE_DIR``; ``servesim trace merge DIR`` joins the fragments into one trace for
Perfetto. See :mod:`servesim.profile.api` for the settings and
:mod:`servesim.profile.fragment` for the file format.
"""

from servesim.profile.api import (
    Settings,
    configure,
    counter,
    disable,
    enable,
    flush,
    fragment_path,
    instant,
    is_enabled,
    set_process_name,
    settings,
    span,
    stats,
    step,
)
from servesim.profile.recorder import ProfileStats

__all__ = [
    "ProfileStats",
    "Settings",
    "configure",
    "counter",
    "disable",
    "enable",
    "flush",
    "fragment_path",
    "instant",
    "is_enabled",
    "set_process_name",
    "settings",
    "span",
    "stats",
    "step",
]
