"""Commands: hardware."""

from __future__ import annotations

from servesim.cli.app import app  # noqa: F401
