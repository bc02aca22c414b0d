"""Reading the user's text files: UTF-8 only, and bounded in what is held at once.

Every reader of a file the user names (scenario, sweep, hardware and calibration YAML, a
model's config.json, traces, step logs, run tables) goes through these helpers, so that a
file which is not what it should be is one :class:`ServesimError` naming the file, the line
and the fix, never a ``UnicodeDecodeError``, a ``csv.Error`` or minutes spent buffering a
2 GB line:

- :func:`read_text`: a whole document (YAML, JSON), at most :data:`MAX_DOCUMENT_BYTES`;
- :func:`text_lines`: one line at a time, each at most :data:`MAX_LINE_BYTES`;
- :func:`csv_rows`: CSV records over :func:`text_lines` (so a field is bounded too).

A UTF-8 byte-order mark at the start of a file is dropped (spreadsheet exports write one).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from servesim.errors import ServesimError

MAX_LINE_BYTES = 16 * 2**20
"""Longest line (or CSV record's line) a reader accepts. The longest real lines are sessions
files' hash ids (a 1M-token conversation at 16 tokens per id is ~0.5 MB); a longer line is
not a trace, and reading it whole would only delay the error."""

MAX_DOCUMENT_BYTES = 64 * 2**20
"""Largest YAML or JSON document read whole (scenario, sweep, hardware, config.json,
calibration files are kilobytes)."""

# NOTE: the csv module's own per-field limit (131,072 characters) is process-wide and lower
# than a line may be; lines are bounded above, so fields are, and CSV hash-id cells of long
# prompts fit.
csv.field_size_limit(MAX_LINE_BYTES)

_BOM = "\ufeff"
_LONE_CR = re.compile(r"(?<=\r)(?!\n|$)")
_FIX_ENCODING = "check that it is the right file; save it as UTF-8"


def not_a_file(path: str | Path) -> str:
    """Why ``path`` is no readable file, for an error message: "does not exist", or "is not a
    file" (a folder, a device)."""
    return "is not a file" if Path(path).exists() else "does not exist"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def _not_utf8(
    err: UnicodeDecodeError, data: bytes, name: str, field: str | None, first_line: int = 1
) -> ServesimError:
    line = first_line + data.count(b"\n", 0, err.start)
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    byte = data[err.start]
    return ServesimError(
        f"{name} line {line}: byte 0x{byte:02x} at column {column} is not UTF-8 text",
        field=field,
        fix=_FIX_ENCODING,
    )


def decode(data: bytes, name: str, field: str | None = None, first_line: int = 1) -> str:
    """``data`` (the bytes of ``name`` from line ``first_line`` on) as text; a byte that is
    not UTF-8 raises ServesimError naming the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(err, data, name, field, first_line) from None
    return text[1:] if first_line == 1 and text.startswith(_BOM) else text


def read_text(
    path: str | Path,
    field: str | None = None,
    name: str | None = None,
    limit: int = MAX_DOCUMENT_BYTES,
) -> str:
    """The whole text of a UTF-8 file of at most ``limit`` bytes.

    ``name`` (default: the path as given) and ``field`` (the option or field that named the
    file) label the error a binary or oversized file raises."""
    path = Path(path)
    name = str(path) if name is None else name
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ServesimError(
            f"{name} is larger than {_mib(limit)}; that is not a servesim input file",
            field=field,
            fix="check that the path names the right file",
        )
    return decode(data, name, field)


def raw_lines(path: str | Path, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` of each line of ``path`` (from 1, ``\\n`` kept); ``None`` for a
    line longer than ``limit`` bytes, which is skipped over without being held."""
    with Path(path).open("rb") as f:
        lineno = 0
        while True:
            raw = f.readline(limit + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(2**20)
                yield lineno, None
            else:
                yield lineno, raw


def too_long(
    name: str, lineno: int, field: str | None, limit: int = MAX_LINE_BYTES
) -> ServesimError:
    """The error for a line longer than ``limit`` bytes."""
    return ServesimError(
        f"{name} line {lineno} is longer than {_mib(limit)}",
        field=field,
        fix="check that the file is a text file with one record per line",
    )


def text_lines(
    path: str | Path,
    field: str | None = None,
    name: str | None = None,
    limit: int = MAX_LINE_BYTES,
    errors: str = "strict",
) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 file (``\\n`` kept), one at a time.

    A line over ``limit`` bytes, or (with ``errors="strict"``) one that is not UTF-8, raises
    ServesimError naming the file and line; ``errors="replace"`` decodes such bytes as U+FFFD
    (for logs whose writer may have been killed mid-character)."""
    name = str(path) if name is None else name
    for lineno, raw in raw_lines(path, limit):
        if raw is None:
            raise too_long(name, lineno, field, limit)
        if errors == "strict":
            yield lineno, decode(raw, name, field, first_line=lineno)
        else:
            text = raw.decode("utf-8", errors=errors)
            yield lineno, text[1:] if lineno == 1 and text.startswith(_BOM) else text


def csv_rows(
    path: str | Path,
    field: str | None = None,
    name: str | None = None,
    delimiter: str = ",",
    limit: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of each CSV record of a UTF-8 file (the number of the line the
    record ends on); a malformed record raises ServesimError naming its line."""
    name = str(path) if name is None else name
    lines = (
        part
        for _, text in text_lines(path, field, name, limit)
        # NOTE: a lone \r ends a line too (old spreadsheet exports), as in the csv module's
        # own reading of a file opened with newline=""; the csv reader refuses one mid-line.
        for part in (_LONE_CR.split(text) if "\r" in text else (text,))
    )
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise ServesimError(
                f"{name} line {reader.line_num}: not valid CSV ({err})",
                field=field,
                fix="check the quoting of that line",
            ) from None
        yield reader.line_num, row


PARSE_ERRORS = (ValueError, RecursionError)
"""What a YAML or JSON parser raises, beyond its own error class, for text that parses into
something Python refuses: a number of over 4,300 digits, a date such as 2023-02-30, a
document nested thousands deep. (json's JSONDecodeError is a ValueError.)"""


def parse_problem(err: BaseException) -> str:
    """A short description of why a YAML or JSON document did not parse, with its line."""
    if isinstance(err, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(err):
        return "a number has too many digits"
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "msg", None)
    line = mark.line + 1 if mark is not None else getattr(err, "lineno", None)
    # NOTE: the first line only: PyYAML's reader errors go on with the position on a second
    # line, and the CLI's contract is one line.
    text = (str(problem or err).strip().splitlines() or [err.__class__.__name__])[0]
    if line is None and isinstance(getattr(err, "position", None), int):
        return f"{text} at character {err.position + 1}"  # type: ignore[attr-defined]
    return f"{text} at line {line}" if line is not None else text


def _strict_loader() -> type:
    """PyYAML's safe loader (libyaml's parser when built with it) that refuses a mapping
    naming one key twice: YAML says keys are unique, and PyYAML would silently keep the last
    (``model:`` twice in a scenario runs the second model without a word)."""
    import yaml
    from yaml.constructor import ConstructorError

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
            if isinstance(node, yaml.MappingNode):
                seen: dict[object, object] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # (``<<:`` merges are overridden by design)
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: the constructor reports it
                        continue
                    if first is not key_node:
                        raise ConstructorError(
                            None, None, f"the key {key!r} is given twice", key_node.start_mark
                        )
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


_LOADER: list[type] = []


def yaml_loader() -> type:
    """The YAML loader every user file is read with (:func:`_strict_loader`), made once."""
    if not _LOADER:
        _LOADER.append(_strict_loader())
    return _LOADER[0]


def load_yaml(text: str):  # type: ignore[no-untyped-def]
    """``yaml.safe_load`` of a user's document, refusing duplicate keys (the YAML errors as
    ``yaml.safe_load`` raises them)."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # a SafeLoader subclass: no arbitrary objects
