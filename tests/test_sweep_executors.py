"""Executors: serial, local process pool and Ray give the same rows; a dead Ray is exit 2."""

import logging
import socket

import pytest

from servesim.errors import ServesimError
from servesim.sweep.executors import (
    LocalExecutor,
    RayExecutor,
    SerialExecutor,
    check_ray_address,
    make_executor,
    run_ordered,
)
from servesim.sweep.results import same_rows
from servesim.sweep.runner import run_sweep
from servesim.sweep.spec import expand, parse_sweep

SWEEP = {
    "base": {"workload": {"preset": "conversation", "num_requests": 40}},
    "grid": {"scheduler.max_num_batched_tokens": [512, 8192], "workload.arrival.rate": [4, 30]},
}


@pytest.fixture(scope="module")
def points():
    spec = parse_sweep(SWEEP)
    return expand(spec, spec.base)


@pytest.fixture(scope="module")
def serial_rows(points, tmp_path_factory):
    return run_sweep(points, tmp_path_factory.mktemp("serial"), SerialExecutor()).rows


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_executor_picks_by_flags():
    assert isinstance(make_executor(1), SerialExecutor)
    ex = make_executor(2)
    assert isinstance(ex, LocalExecutor) and ex.workers == 2
    with pytest.raises(ServesimError, match="--workers"):
        make_executor(0)


def test_local_pool_gives_the_same_rows_as_serial(points, serial_rows, tmp_path):
    with LocalExecutor(2) as ex:
        rows = run_sweep(points, tmp_path, ex).rows
    assert len(rows) == len(points)
    assert same_rows(rows, serial_rows)
    # Not vacuous: the scenarios differ from one another.
    assert len({r["p99_ttft_ms"] for r in rows}) == len(rows)


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_serial(local_ray, points, serial_rows, tmp_path):
    with RayExecutor("local") as ex:  # joins the session the fixture started
        assert ex.workers == 2
        rows = run_sweep(points, tmp_path, ex).rows
        assert run_ordered(ex, abs, [-1, -2, 3]) == [1, 2, 3]
    assert local_ray.is_initialized()  # not ours to shut down
    assert same_rows(rows, serial_rows)


def test_a_ray_address_that_does_not_answer_is_a_clear_error():
    port = closed_port()
    with pytest.raises(ServesimError) as err:
        check_ray_address(f"127.0.0.1:{port}", timeout_s=2)
    assert f"the Ray cluster at 127.0.0.1:{port} does not answer" in str(err.value)
    assert "--ray" in str(err.value)
    with pytest.raises(ServesimError, match="is not a Ray address"):
        check_ray_address("nowhere")
