"""Commands: cost_cmds."""

from __future__ import annotations

from servesim.cli.app import app  # noqa: F401
