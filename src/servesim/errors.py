"""User-facing errors.

A :class:`ServesimError` is a mistake in the user's input (an unknown model, a malformed trace
row, an impossible knob). The CLI turns it into one line on stderr and exit code 2; the library
raises it so that notebooks get the same clear message.
"""

from __future__ import annotations


class ServesimError(ValueError):
    """A problem with user input: says which field is wrong and how to fix it."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None):
        self.field = field
        self.fix = fix
        text = message
        if field and not message.startswith(field):
            text = f"{field}: {message}"
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)
