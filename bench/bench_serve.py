"""How many concurrent token streams `servesim serve` sustains in real time, and how exactly it
times them.

Starts `servesim serve --time-scale 1` (Llama-3.1-8B on one H100, the defaults, with
``--max-num-seqs`` raised so every stream runs), then for each concurrency level runs that many
closed-loop streaming clients (each sends its next request when the last one ended: 64-token
prompts of token ids, 128 output tokens) for ``--seconds`` seconds, and prints:

- tokens/s the clients received, and requests/s completed;
- the server's per-token timing error: wall time between the instant a token is due (its
  simulated time) and its hand-over to the HTTP stream, from the server's own
  ``servesim:token_delivery_lateness_seconds`` histogram (p50/p99 interpolated inside its
  buckets: 0.5, 1, 2, 5, 10 ms ...);
- the CPU seconds the server used per wall second (1.0 = one core busy), and the seconds it
  was ready to run but waited for a core (other processes on a shared machine).

The clients are a minimal raw-socket HTTP/1.1 reader (they count ``data: {`` chunks), so that
on a 2-core machine most of the second core is left to the server.

    python bench/bench_serve.py [--levels 16,32,64,128,256] [--seconds 8] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SERVESIM = str(Path(sys.executable).parent / "servesim")
LATENESS = "servesim:token_delivery_lateness_seconds"


def lateness_buckets(port: int) -> dict[float, float]:
    """Cumulative counts by upper edge of the lateness histogram."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == LATENESS:
            return {float(s.labels["le"]): s.value for s in family.samples
                    if s.name.endswith("_bucket")}  # fmt: skip
    raise SystemExit("no lateness histogram on /metrics")


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile (seconds) of the observations between two scrapes, linear in buckets."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    target, lower, below = q * total, 0.0, 0.0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= target:
            if edge == float("inf"):
                return lower
            return lower + (edge - lower) * (target - below) / max(cum - below, 1e-12)
        lower, below = edge, cum
    return lower


async def user(port: int, index: int, until: float, counts: list[int]) -> None:
    """One closed-loop client on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    while time.perf_counter() < until:
        body = json.dumps(
            {
                "prompt": [index % 30000 + 1, n % 30000 + 1] + [7] * 62,
                "max_tokens": 128,
                "stream": True,
                "ignore_eos": True,
            }
        ).encode()
        head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        writer.write(head + body)
        buffer = b""
        while not buffer.endswith(b"0\r\n\r\n") or b"[DONE]" not in buffer:
            chunk = await reader.read(65536)
            if not chunk:
                return
            counts[0] += chunk.count(b"data: {")
            buffer = buffer[-16:] + chunk if b"[DONE]" not in buffer else buffer + chunk
            if b"[DONE]" in chunk:
                buffer = chunk[chunk.index(b"[DONE]") :]
        counts[1] += 1
        n += 1
    writer.close()


async def level(port: int, users: int, seconds: float) -> tuple[int, int]:
    counts = [0, 0]
    until = time.perf_counter() + seconds
    tasks = [asyncio.create_task(user(port, i, until, counts)) for i in range(users)]
    await asyncio.gather(*tasks)
    return counts[0], counts[1]


def cpu_and_wait(pid: int) -> tuple[float, float]:
    """Seconds the server ran on a CPU, and seconds it was runnable but waited for one (its
    threads summed; from the kernel's schedstat)."""
    run = wait = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        ran, waited, _ = (task / "schedstat").read_text().split()
        run, wait = run + int(ran) / 1e9, wait + int(waited) / 1e9
    return run, wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="16,32,64,128,256")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, clients on CPU 1 (Linux taskset)"
    )
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})
    pin = ["taskset", "-c", "0"] if args.pin else []
    server = subprocess.Popen(
        [*pin, SERVESIM, "serve", "--port", "0", "--time-scale", "1", "--max-num-seqs", "1024"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stderr.readline()  # "servesim serve: MODEL at http://HOST:PORT/v1 ..."
        port = int(line.split("/v1")[0].rsplit(":", 1)[1])
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        print(f"servesim serve --time-scale 1 on {os.cpu_count()} cores (Llama-3.1-8B, H100); "
              f"{args.seconds:g} s per level, 64-token prompts, 128 output tokens")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.2f} (other processes compete for the cores)")
        print(f"{'streams':>8} {'tokens/s':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'server CPU':>10} {'CPU wait':>8} {'client CPU':>10}")  # fmt: skip
        for users in (int(x) for x in args.levels.split(",")):
            before, (cpu0, wait0) = lateness_buckets(port), cpu_and_wait(server.pid)
            client0 = time.process_time()
            started = time.perf_counter()
            tokens, requests = asyncio.run(level(port, users, args.seconds))
            wall = time.perf_counter() - started
            after, (cpu1, wait1) = lateness_buckets(port), cpu_and_wait(server.pid)
            p50, p99 = (1000 * quantile(before, after, q) for q in (0.5, 0.99))
            client = time.process_time() - client0
            print(f"{users:>8} {tokens / wall:>9,.0f} {requests / wall:>7.1f} {p50:>7.2f} "
                  f"{p99:>7.2f} {(cpu1 - cpu0) / wall:>10.2f} {(wait1 - wait0) / wall:>8.2f} "
                  f"{client / wall:>10.2f}",
                  flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
