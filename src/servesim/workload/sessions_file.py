"""servesim's sessions file (agentic / multi-turn replay): one JSON object per line, each a
session of turns with input and output tokens, think times and optional prefix hash ids."""

import math
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from servesim.errors import ServesimError
from servesim.validation import FieldError, Spec, problem_of
from servesim.validation import replace as replace_spec
from servesim.workload.spec import MAX_TOKENS
from servesim.workload.trace_columns import MAX_SECONDS, _need_file, _read_jsonl

# --------------------------------------------------------------------------- sessions files


class SessionTurnLine(Spec):
    """One turn of a sessions-file line."""

    input_tokens: Annotated[
        int, Meta(ge=1, le=MAX_TOKENS, description="the whole prompt, history included")
    ]
    output_tokens: Annotated[int, Meta(ge=1, le=MAX_TOKENS)]
    think_time_s: Annotated[
        float,
        Meta(
            ge=0, le=MAX_SECONDS, description="seconds from the previous turn finishing to this one"
        ),
    ] = 0.0
    hash_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.think_time_s):
            raise FieldError("think_time_s", f"must be a finite number (got {self.think_time_s})")


class SessionLine(Spec, kw_only=True):
    """One line of a sessions file: a session and its turns."""

    session_id: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    start_s: Annotated[float, Meta(ge=0, le=MAX_SECONDS, description="first turn's arrival, s")]
    turns: Annotated[tuple[SessionTurnLine, ...], Meta(min_length=1)]
    hash_block_size: Annotated[int, Meta(ge=1, le=MAX_TOKENS)] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.start_s):
            raise FieldError("start_s", f"must be a finite number (got {self.start_s})")


def read_sessions(path: str | Path, hash_block_size: int = 16) -> list[SessionLine]:
    """Read a sessions JSONL file, sorted by ``start_s``, starts re-zeroed at the first one.

    Each line: ``{"start_s": 0.0, "turns": [{"input_tokens": 900, "output_tokens": 120},
    {"input_tokens": 1150, "output_tokens": 80, "think_time_s": 4.0}]}`` plus optional
    ``session_id`` (unique), per-turn ``hash_ids`` and ``hash_block_size`` (tokens per id;
    default ``hash_block_size``).
    """
    path = Path(path)
    _need_file(path)
    records, linenos = _read_jsonl(path)
    if not records:
        raise ServesimError(f"{path.name} has no sessions", field="trace")
    lines = []
    for record, lineno in zip(records, linenos, strict=True):
        try:
            line = msgspec.convert(record, SessionLine)
        except msgspec.ValidationError as err:
            problem = problem_of(err, SessionLine, record)
            where = f"{problem.dotted}: " if problem.dotted else ""
            raise ServesimError(
                f"{path.name} line {lineno}: {where}{problem.message}", field="trace"
            ) from None
        if line.turns[0].think_time_s:
            raise ServesimError(
                f"{path.name} line {lineno}: turns.0.think_time_s is set",
                field="trace",
                fix="the first turn arrives at start_s",
            )
        _check_turn_ids(line, hash_block_size, f"{path.name} line {lineno}")
        lines.append(line)
    ids = [line.session_id for line in lines if line.session_id is not None]
    if len(ids) != len(set(ids)):
        raise ServesimError(
            f"{path.name}: session_id values repeat",
            field="trace",
            fix="give each session its own id, or none",
        )
    lines.sort(key=lambda line: line.start_s)
    first = lines[0].start_s
    return [replace_spec(line, start_s=line.start_s - first) for line in lines]


def _check_turn_ids(line: SessionLine, default_block: int, where: str) -> None:
    block = line.hash_block_size or default_block
    for k, turn in enumerate(line.turns):
        most = -(-(turn.input_tokens + turn.output_tokens) // block)
        if turn.hash_ids is not None and len(turn.hash_ids) > most:
            raise ServesimError(
                f"{where}: turns.{k}.hash_ids has {len(turn.hash_ids)} ids but "
                f"{turn.input_tokens} + {turn.output_tokens} tokens fill only {most} blocks of "
                f"{block}",
                field="trace",
                fix="set hash_block_size to the block size the ids were made with",
            )


def select_sessions(
    lines: list[SessionLine],
    *,
    time_window: tuple[float, float] | None = None,
    max_requests: int | None = None,
    rate_scale: float = 1.0,
    source: str = "sessions file",
) -> list[SessionLine]:
    """Sessions starting in ``time_window``; at most ``max_requests`` turns in all (the
    session that crosses the cap is cut short); starts re-zeroed and divided by ``rate_scale``.
    Think times are the users' and stay as they are."""
    if time_window is not None:
        start, end = time_window
        lines = [line for line in lines if start <= line.start_s < end]
        if not lines:
            raise ServesimError(
                f"no sessions of {source} start in {list(time_window)} s",
                field="time_window",
                fix="pick a window inside the file",
            )
    if max_requests is not None:
        capped, left = [], max_requests
        for line in lines:
            if left <= 0:
                break
            capped.append(replace_spec(line, turns=line.turns[:left]))
            left -= len(line.turns)
        lines = capped
    first = lines[0].start_s
    return [replace_spec(line, start_s=(line.start_s - first) / rate_scale) for line in lines]
