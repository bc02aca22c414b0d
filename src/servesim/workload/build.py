"""Turn a :class:`WorkloadSpec` into a lazy stream of :class:`Session` objects.

A workload is two independent choices:

1. a **source** of conversations (their turns, think times and, for replays, recorded start
   times): synthetic single-turn requests, synthetic multi-turn sessions, trace rows, or a
   sessions file;
2. a **timing**: the recorded start times, an open-loop arrival process (Poisson, gamma,
   constant, burst) that times each conversation's start, or a closed loop of N users.

Randomness: the caller's generator seeds one child generator per purpose (input lengths,
output lengths, arrivals, think times, prefix choice, turn counts). So with one seed, changing
the arrival rate leaves every request's lengths unchanged (common random numbers for sweeps),
and the stream never depends on how much of it the consumer reads.

Everything is drawn in vectorised chunks of :data:`CHUNK` and yielded one session at a time:
a million requests stream in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from servesim.workload.arrivals import CHUNK, arrival_times, describe_arrival
from servesim.workload.content import (
    ContentIds,
    first_turn_ids,
    next_turn_ids,
    prefix_ids,
)
from servesim.workload.lengths import (
    Sampler,
    describe_duration,
    describe_length,
    duration_sampler,
    length_sampler,
)
from servesim.workload.session import RequestSpec, Session
from servesim.workload.spec import (
    ArrivalSpec,
    ClosedLoop,
    FixedDuration,
    FixedLength,
    PresetLength,
    WorkloadSpec,
    parse_workload_spec,
)
from servesim.workload.traces import (
    SessionLine,
    TraceTable,
    detect_format,
    read_sessions,
    read_trace,
    select_rows,
    select_sessions,
)

DEFAULT_HASH_BLOCK_SIZE = 16
_STREAMS = ("input", "output", "arrival", "think", "prefix", "turns", "user_think")


class _Conversation(NamedTuple):
    """What a source produces: turns and the think times between them; for replays, the
    recorded start (seconds) and session id. (A NamedTuple: one is made per request, and it
    is cheaper to build than a dataclass.)"""

    turns: tuple[RequestSpec, ...]
    think_times_s: tuple[float, ...] = ()
    start_s: float | None = None
    session_id: int | None = None


_new_conversation = partial(tuple.__new__, _Conversation)
"""``_Conversation(...)`` from a tuple of its four fields, without the named tuple's
Python-level ``__new__``."""


@dataclass(frozen=True)
class _Source:
    conversations: Iterator[_Conversation]
    num_requests: int


def _child_rngs(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    seeds = rng.integers(0, 2**63, size=len(_STREAMS))
    return {name: np.random.default_rng(int(s)) for name, s in zip(_STREAMS, seeds, strict=True)}


def _scalars(sampler: Sampler, rng: np.random.Generator) -> Iterator[float]:
    """One value at a time from a sampler called in chunks."""
    while True:
        yield from sampler(rng, CHUNK).tolist()


# --------------------------------------------------------------------------- synthetic sources


@dataclass(frozen=True)
class _Samplers:
    """The synthetic workload's distributions, built once (files read) before streaming."""

    input: Sampler
    output: Sampler
    new_message: Sampler
    turns: Sampler
    think: Sampler


@dataclass(frozen=True)
class _Prefixes:
    """Shared-prefix settings: ``groups`` system prompts of ``tokens`` tokens each, used by a
    ``fraction`` of requests (of sessions, for multi-turn)."""

    groups: int
    tokens: int
    fraction: float
    block_size: int

    def draw(self, rng: np.random.Generator, n: int) -> list[int | None]:
        """The prefix group of each of ``n`` requests; None for those without one."""
        if self.groups == 0:
            return [None] * n
        uses = rng.random(n) < self.fraction
        groups = rng.integers(0, self.groups, size=n)
        return [int(g) if u else None for u, g in zip(uses, groups, strict=True)]

    def first_turn(
        self,
        ids: ContentIds,
        user_tokens: int,
        output_tokens: int,
        group: int | None,
        with_ids: bool,
    ) -> RequestSpec:
        """A conversation's first request; a shared prefix goes in front of the user's tokens.

        ``with_ids``: give ids even without a prefix (a later turn will extend this one).
        """
        bs = self.block_size
        if group is not None:
            inp = self.tokens + user_tokens
            shared = prefix_ids(group, self.tokens, bs)
            return RequestSpec(
                inp, output_tokens, first_turn_ids(ids, inp, output_tokens, bs, shared), bs
            )
        if with_ids:
            hashes = first_turn_ids(ids, user_tokens, output_tokens, bs)
            return RequestSpec(user_tokens, output_tokens, hashes, bs)
        # NOTE: a lone request with no shared prefix is unique content; empty hash_ids say so
        # without spending a tuple of ids per request.
        return RequestSpec(user_tokens, output_tokens, (), bs)


def _single_turn_stream(
    n_total: int,
    dists: _Samplers,
    prefixes: _Prefixes,
    rngs: dict[str, np.random.Generator],
    ids: ContentIds,
) -> Iterator[_Conversation]:
    done = 0
    bs = prefixes.block_size
    while done < n_total:
        m = min(CHUNK, n_total - done)
        ins = dists.input(rngs["input"], m).tolist()
        outs = dists.output(rngs["output"], m).tolist()
        if not prefixes.groups:
            # (No shared prefix: each request's content is its own, what ``first_turn``
            # makes then, built here directly: a session's share of a 1M-request run.)
            for inp, out in zip(ins, outs, strict=True):
                yield _new_conversation(((RequestSpec(inp, out, (), bs),), (), None, None))
        else:
            groups = prefixes.draw(rngs["prefix"], m)
            for inp, out, group in zip(ins, outs, groups, strict=True):
                yield _Conversation((prefixes.first_turn(ids, inp, out, group, False),))
        done += m


def _turn_counts(dists: _Samplers, rng: np.random.Generator, left: int) -> np.ndarray:
    """Turns of the next chunk of sessions; the session crossing ``left`` turns is cut short."""
    counts = dists.turns(rng, CHUNK)
    ends = np.cumsum(counts)
    if ends[-1] < left:
        return counts
    s = int(np.searchsorted(ends, left))  # first session reaching the total
    counts = counts[: s + 1].copy()
    counts[-1] -= ends[s] - left
    return counts


def _multi_turn_stream(
    n_total: int,
    dists: _Samplers,
    prefixes: _Prefixes,
    rngs: dict[str, np.random.Generator],
    ids: ContentIds,
) -> Iterator[_Conversation]:
    done = 0
    while done < n_total:
        counts = _turn_counts(dists, rngs["turns"], n_total - done)
        n_sessions, n_turns = len(counts), int(counts.sum())
        firsts = dists.input(rngs["input"], n_sessions).tolist()
        # Flat per-turn draws; turn j of session s sits at starts[s] + j. Slots at j = 0 of
        # `news` and `thinks` are drawn and unused, which keeps the indexing plain.
        news = dists.new_message(rngs["input"], n_turns).tolist()
        outs = dists.output(rngs["output"], n_turns).tolist()
        thinks = dists.think(rngs["think"], n_turns).tolist()
        groups = prefixes.draw(rngs["prefix"], n_sessions)
        starts = (np.cumsum(counts) - counts).tolist()
        for s, (k, at) in enumerate(zip(counts.tolist(), starts, strict=True)):
            turn = prefixes.first_turn(ids, firsts[s], outs[at], groups[s], True)
            turns = [turn]
            for j in range(at + 1, at + k):
                inp = turn.input_tokens + turn.output_tokens + news[j]
                hashes = next_turn_ids(ids, turn, inp, outs[j])
                turn = RequestSpec(inp, outs[j], hashes, turn.hash_block_size)
                turns.append(turn)
            yield _Conversation(tuple(turns), tuple(thinks[at + 1 : at + k]))
        done += n_turns


def _synthetic_source(
    spec: WorkloadSpec, rngs: dict[str, np.random.Generator], ids: ContentIds
) -> _Source:
    # Samplers are built here, eagerly, so a missing lengths file fails in build_workload.
    sample_in = length_sampler(spec.effective_input_len)
    mt = spec.multi_turn
    dists = _Samplers(
        input=sample_in,
        output=length_sampler(spec.effective_output_len),
        new_message=sample_in
        if mt is None or mt.new_message_len is None
        else length_sampler(mt.new_message_len),
        turns=length_sampler(mt.turns) if mt else length_sampler(FixedLength(value=1)),
        think=duration_sampler(mt.think_time_s if mt else FixedDuration(value_s=0.0)),
    )
    prefixes = _Prefixes(
        spec.prefix_groups,
        spec.prefix_len,
        spec.prefix_fraction,
        spec.hash_block_size or DEFAULT_HASH_BLOCK_SIZE,
    )
    n = spec.num_requests
    assert n is not None  # WorkloadSpec guarantees it for a synthetic workload
    stream = _single_turn_stream if mt is None else _multi_turn_stream
    return _Source(stream(n, dists, prefixes, rngs, ids), n)


# --------------------------------------------------------------------------- replay sources


def _trace_stream(table: TraceTable) -> Iterator[_Conversation]:
    times = table.timestamps_s.tolist()
    ins, outs = table.input_tokens.tolist(), table.output_tokens.tolist()
    hashes = table.hash_ids
    bs = table.hash_block_size
    for i, t in enumerate(times):
        yield _Conversation(
            (RequestSpec(ins[i], outs[i], hashes[i] if hashes else (), bs),), start_s=t
        )


def _session_turns(
    line: SessionLine, block_size: int, extend: bool, ids: ContentIds
) -> tuple[RequestSpec, ...]:
    """A sessions-file line's turns, with ids generated where the file gives none.

    A turn without ``hash_ids`` continues the previous turn's context when ``extend`` is on
    and its prompt is at least the previous prompt + output (chat and agent loops resend the
    history); otherwise its content is fresh.
    """
    bs = line.hash_block_size or block_size
    turns: list[RequestSpec] = []
    for t in line.turns:
        inp, out = t.input_tokens, t.output_tokens
        if t.hash_ids is not None:
            hashes = t.hash_ids
        elif len(line.turns) == 1:
            hashes = ()  # nothing can share a lone turn's content: unique, no ids needed
        elif extend and turns and inp >= turns[-1].input_tokens + turns[-1].output_tokens:
            hashes = next_turn_ids(ids, turns[-1], inp, out)
        else:
            hashes = first_turn_ids(ids, inp, out, bs)
        turns.append(RequestSpec(inp, out, tuple(hashes), bs))
    return tuple(turns)


def _sessions_stream(
    lines: list[SessionLine], block_size: int, extend: bool, ids: ContentIds
) -> Iterator[_Conversation]:
    # The file's session ids are kept only when every line has one: mixing them with
    # positional ids could repeat an id.
    keep_ids = all(line.session_id is not None for line in lines)
    for line in lines:
        yield _Conversation(
            _session_turns(line, block_size, extend, ids),
            tuple(t.think_time_s for t in line.turns[1:]),
            start_s=line.start_s,
            session_id=line.session_id if keep_ids else None,
        )


def _replay_source(spec: WorkloadSpec, ids: ContentIds) -> _Source:
    assert spec.trace is not None
    path = Path(spec.trace)
    fmt = detect_format(path) if spec.trace_format == "auto" else spec.trace_format
    block = spec.hash_block_size or DEFAULT_HASH_BLOCK_SIZE
    if fmt == "sessions":
        lines = select_sessions(
            read_sessions(path, block),
            time_window=spec.time_window,
            max_requests=spec.max_requests,
            rate_scale=spec.rate_scale,
            source=path.name,
        )
        stream = _sessions_stream(lines, block, spec.sessions_extend_context, ids)
        return _Source(stream, sum(len(line.turns) for line in lines))
    table = read_trace(
        path,
        fmt,
        timestamp_col=spec.timestamp_col,
        input_col=spec.input_col,
        output_col=spec.output_col,
        hash_ids_col=spec.hash_ids_col,
        timestamp_unit=spec.timestamp_unit,
        hash_block_size=spec.hash_block_size,
        zero_tokens=spec.zero_tokens,
    )
    table = select_rows(
        table,
        time_window=spec.time_window,
        max_requests=spec.max_requests,
        rate_scale=spec.rate_scale,
    )
    return _Source(_trace_stream(table), len(table))


# --------------------------------------------------------------------------- timings


def _recorded_times(conversations: Iterator[_Conversation]) -> Iterator[Session]:
    for i, c in enumerate(conversations):
        assert c.start_s is not None
        sid = i if c.session_id is None else c.session_id
        yield Session(sid, c.start_s, c.turns, c.think_times_s)


def _open_loop(
    conversations: Iterator[_Conversation], arrival: ArrivalSpec, rng: np.random.Generator
) -> Iterator[Session]:
    times = arrival_times(arrival, rng)  # endless: the conversations end the zip
    for i, (c, t) in enumerate(zip(conversations, times, strict=False)):
        yield Session(i, t, c.turns, c.think_times_s)


def _user_quotas(total: int, users: int) -> list[int]:
    """Requests per user: as even as possible, extra ones to the first users."""
    base, extra = divmod(total, users)
    return [base + (u < extra) for u in range(min(users, total))]


def _closed_loop(
    conversations: Iterator[_Conversation],
    closed: ClosedLoop,
    total: int,
    rng: np.random.Generator,
) -> Iterator[Session]:
    """One session per user, all starting at t = 0.

    Users take whole conversations in order until they hold their share of the requests (so
    with multi-turn conversations the shares differ by up to one conversation; the last user
    takes what is left). Between two conversations of a user: ``closed.think_time_s``.
    """
    pauses = _scalars(duration_sampler(closed.think_time_s), rng)
    quotas = _user_quotas(total, closed.concurrency)
    for user, quota in enumerate(quotas):
        last = user == len(quotas) - 1
        turns: list[RequestSpec] = []
        thinks: list[float] = []
        starts: list[int] = []
        for c in conversations:
            if turns:
                thinks.append(next(pauses))
                starts.append(len(turns))
            turns.extend(c.turns)
            thinks.extend(c.think_times_s)
            if len(turns) >= quota and not last:
                break
        if turns:
            yield Session(user, 0.0, tuple(turns), tuple(thinks), tuple(starts))


# --------------------------------------------------------------------------- public API


def build_workload(
    spec: WorkloadSpec | Mapping[str, Any], rng: np.random.Generator
) -> Iterator[Session]:
    """The sessions of a workload, ordered by ``start_s``, generated lazily.

    Files (traces, lengths) are read and checked now, so bad input raises ServesimError here
    rather than mid-simulation; sessions are then drawn in chunks as they are consumed. The
    same spec and the same seed of ``rng`` give an identical stream.
    """
    spec = parse_workload_spec(spec)
    rngs = _child_rngs(rng)
    ids = ContentIds()  # one counter per workload: ids unique within it
    source = (
        _synthetic_source(spec, rngs, ids) if spec.trace is None else (_replay_source(spec, ids))
    )
    arrival = spec.effective_arrival
    if arrival is None:
        return _recorded_times(source.conversations)
    if isinstance(arrival, ClosedLoop):
        return _closed_loop(source.conversations, arrival, source.num_requests, rngs["user_think"])
    return _open_loop(source.conversations, arrival, rngs["arrival"])


def _lengths_phrase(spec: WorkloadSpec) -> str:
    inp, out = spec.effective_input_len, spec.effective_output_len
    if isinstance(inp, PresetLength) and isinstance(out, PresetLength) and inp.name == out.name:
        return "" if spec.preset == inp.name else f"{inp.name} lengths, "
    return f"in {describe_length(inp)}, out {describe_length(out)} tok, "


def describe(spec: WorkloadSpec | Mapping[str, Any]) -> str:
    """One line for a summary table, e.g. ``conversation: 1000 req, Poisson 10 req/s``.

    Reads no file.
    """
    spec = parse_workload_spec(spec)
    arrival = spec.effective_arrival
    if spec.trace is not None:
        name = spec.name or Path(spec.trace).name
        fmt = spec.trace_format
        parts = [f"{name}: {'' if fmt == 'auto' else fmt + ' '}trace replay"]
        if spec.max_requests is not None:
            parts.append(f"first {spec.max_requests} req")
        if spec.time_window is not None:
            parts.append(f"window {spec.time_window[0]:g}–{spec.time_window[1]:g} s")
        if spec.rate_scale != 1.0:
            parts.append(f"×{spec.rate_scale:g} speed")
        if arrival is not None:
            parts.append(f"re-timed {describe_arrival(arrival)}")
        if spec.max_concurrency is not None:
            parts.append(f"at most {spec.max_concurrency} in flight")
        return ", ".join(parts)
    name = spec.name or spec.preset or "synthetic"
    text = f"{name}: {spec.num_requests} req, {_lengths_phrase(spec)}"
    mt = spec.multi_turn
    if mt is not None:
        text += (
            f"sessions of {describe_length(mt.turns)} turns "
            f"(think {describe_duration(mt.think_time_s)}), "
        )
    assert arrival is not None
    text += describe_arrival(arrival)
    if mt is not None and not isinstance(arrival, ClosedLoop):
        text = text.replace(" req/s", " sessions/s")
    if spec.max_concurrency is not None:
        text += f", at most {spec.max_concurrency} in flight"
    if spec.prefix_groups:
        pct = f", {spec.prefix_fraction:.0%} of requests" if spec.prefix_fraction < 1 else ""
        text += f", {spec.prefix_groups} shared prefixes of {spec.prefix_len} tok{pct}"
    return text
