"""Engine speed of two versions of servesim, paired: is a change faster, and by how much?

Two long-lived worker processes, one importing servesim from each source tree, run the same
scenario in alternated rounds (old first, then new first, ...); each round's figure is the
ratio of their event-loop times (``Simulation.run``, the cost model included, no start-up, no
summary). The median ratio is robust to the spells a shared machine goes through, which move
two runs seconds apart far more than most changes do. The first run of each worker warms it
(imports, numba's cache) and is not counted.

    python bench/bench_pair.py OLD [NEW] [--rounds 10] [-n 10000] [--rate 5] [--compiled on]

``OLD`` and ``NEW`` are git revisions (a worktree is checked out for each under a temporary
directory and removed after) or paths to a ``src`` directory; ``NEW`` defaults to this
checkout's ``src``. The workload is ``bench_engine.py``'s: lognormal lengths, median 1,000 in
and 200 out, Poisson arrivals, Llama-3.1-8B on one H100. Both versions must produce the same
number of step records (it says so if they do not: then the ratio compares different work).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from servesim.run import prepare
from servesim.scenario import build_scenario
scenario = build_scenario(json.loads(sys.argv[2]))
for _ in sys.stdin:
    run = prepare(scenario)
    started = time.perf_counter()
    run.sim.run()
    loop = time.perf_counter() - started
    print(json.dumps({"loop": loop, "records": len(run.sim.records.step_columns()["start_s"]),
                      "events": run.sim.num_events}), flush=True)
"""


def _source(revision: str, scratch: Path) -> Path:
    """The ``src`` directory of ``revision``: a path as it is, else a worktree checked out."""
    path = Path(revision)
    if (path / "servesim").is_dir():
        return path.resolve()
    target = scratch / revision.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(target), revision],
        check=True,
        capture_output=True,
    )
    return target / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="git revision or src directory")
    ap.add_argument("new", nargs="?", default=str(REPO / "src"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("-n", "--num-requests", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=5.0, help="req/s (40 saturates)")
    ap.add_argument("--compiled", choices=("auto", "on", "off"), default="on")
    args = ap.parse_args()
    scenario = {
        "workload": {
            "num_requests": args.num_requests,
            "input_len": {"kind": "lognormal", "median": 1000, "sigma": 1.0, "max": 16000},
            "output_len": {"kind": "lognormal", "median": 200, "sigma": 1.0, "max": 4000},
            "arrival": {"kind": "poisson", "rate": args.rate},
        },
        "compiled": args.compiled,
    }
    with tempfile.TemporaryDirectory(prefix="bench_pair_") as tmp:
        scratch = Path(tmp)
        try:
            sources = [_source(args.old, scratch), _source(args.new, scratch)]
            workers = [
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(src), json.dumps(scenario)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for src in sources
            ]

            def one_run(worker: subprocess.Popen) -> dict:
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("run\n")
                worker.stdin.flush()
                line = worker.stdout.readline()
                if not line:
                    raise SystemExit("a worker stopped (its error is above)")
                return json.loads(line)

            warm = [one_run(w) for w in workers]
            if warm[0]["records"] != warm[1]["records"]:
                counts = f"{warm[0]['records']:,} and {warm[1]['records']:,}"
                print(f"note: the versions write {counts} step records: the ratio compares "
                      "different work")  # fmt: skip
            ratios, loops = [], ([], [])
            for r in range(args.rounds):
                order = (0, 1) if r % 2 == 0 else (1, 0)
                got = {i: one_run(workers[i]) for i in order}
                loops[0].append(got[0]["loop"])
                loops[1].append(got[1]["loop"])
                ratios.append(got[1]["loop"] / got[0]["loop"])
                print(f"round {r + 1:>2}: old {got[0]['loop']:.3f} s, new {got[1]['loop']:.3f} s, "
                      f"new/old {ratios[-1]:.3f}", flush=True)  # fmt: skip
            for w in workers:
                assert w.stdin is not None
                w.stdin.close()
                w.wait()
            per_record = [1e6 * min(loop) / warm[i]["records"] for i, loop in enumerate(loops)]
            print(f"median new/old {statistics.median(ratios):.3f} over {args.rounds} rounds; "
                  f"best event loop old {min(loops[0]):.3f} s ({per_record[0]:.1f} µs per record), "
                  f"new {min(loops[1]):.3f} s ({per_record[1]:.1f} µs)")  # fmt: skip
        finally:
            for src in scratch.glob("*/src"):
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(src.parent)],
                    check=False,
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
