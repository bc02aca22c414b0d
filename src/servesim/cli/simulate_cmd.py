"""Commands: simulate_cmd."""

from __future__ import annotations

from servesim.cli.app import app  # noqa: F401
