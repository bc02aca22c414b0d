"""The marker a compiled run leaves beside numba's cache (``servesim.kernel_cache``), and how
``compiled: auto`` reads it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from servesim import kernel_cache
from servesim.fleet import COMPILED_CACHED_MIN_REQUESTS, COMPILED_MIN_REQUESTS, compiled_pricing
from servesim.kernel_cache import KERNEL_SOURCES, kernels_cached, record_kernels_cached
from servesim.scenario import build_scenario


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the kernel modules, with the marker beside them (not the install's own)."""
    root = tmp_path / "servesim"
    for name in KERNEL_SOURCES:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel_cache._PACKAGE / name, target)
    monkeypatch.setattr(kernel_cache, "_PACKAGE", root)
    monkeypatch.setattr(kernel_cache, "MARKER", root / "__pycache__" / "marker.json")
    for name in KERNEL_SOURCES:  # (numba's index of one function of each, as it names them)
        _index(root / name).touch()
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    return root


def _index(source: Path) -> Path:
    cache = source.parent / "__pycache__"
    cache.mkdir(exist_ok=True)
    return cache / f"{source.stem}.kernel-10.{sys.implementation.cache_tag}.nbi"


def _numba_installed() -> bool:
    try:
        importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_numba = pytest.mark.skipif(not _numba_installed(), reason="numba")


@needs_numba
def test_a_recorded_marker_reads_as_cached_until_a_kernel_module_changes(package):
    assert not kernels_cached()  # (no marker yet)
    record_kernels_cached()
    assert kernels_cached()
    stamp = json.loads(kernel_cache.MARKER.read_text(encoding="utf-8"))
    assert stamp["numba"] == importlib.metadata.version("numba")
    assert set(stamp["sources"]) == set(KERNEL_SOURCES)
    assert kernel_cache.MARKER.exists() and not list(package.rglob("*.tmp"))
    # numba recompiles a function whose source file's size or time changed: so must we
    source = package / "engine/_commit_kernels.py"
    source.write_text(source.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert not kernels_cached()
    record_kernels_cached()
    assert kernels_cached()
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not kernels_cached()


@needs_numba
def test_a_kernel_module_s_cleaned_cache_folder_reads_as_not_cached(package, monkeypatch):
    record_kernels_cached()
    assert kernels_cached()
    index = _index(package / "engine/_commit_kernels.py")
    index.unlink()
    assert not kernels_cached()
    index.touch()
    assert kernels_cached()
    # (With NUMBA_CACHE_DIR numba's cache is elsewhere: the folders beside are not read.)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(package / "elsewhere"))
    record_kernels_cached()
    index.unlink()
    assert kernels_cached()


@needs_numba
def test_another_numba_cache_setting_or_numba_version_is_not_the_cache_recorded(
    package, monkeypatch
):
    record_kernels_cached()
    assert kernels_cached()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(package / "elsewhere"))
    assert not kernels_cached()
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert kernels_cached()
    version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "0.0.1" if name == "numba" else version(name)
    )
    assert not kernels_cached()


@needs_numba
def test_disabled_jit_missing_numba_or_a_broken_marker_read_as_not_cached(package, monkeypatch):
    record_kernels_cached()
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    assert not kernels_cached()
    monkeypatch.delenv("NUMBA_DISABLE_JIT")
    kernel_cache.MARKER.write_text('{"numba": ', encoding="utf-8")
    assert not kernels_cached()

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    kernel_cache.MARKER.unlink()
    record_kernels_cached()  # (nothing to stamp: nothing written)
    assert not kernel_cache.MARKER.exists() and not kernels_cached()


@needs_numba
def test_an_unwritable_place_writes_nothing_and_raises_nothing(package, monkeypatch):
    blocker = package / "not_a_directory"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setattr(kernel_cache, "MARKER", blocker / "marker.json")
    record_kernels_cached()
    assert not kernels_cached()
    assert sorted(p.name for p in package.iterdir()) == [
        "__pycache__", "cost", "engine", "fused_kernels.py", "not_a_directory"
    ]  # fmt: skip
    assert not list(package.rglob("*.tmp")) and not list(package.rglob("marker.json"))


@needs_numba
def test_a_compiled_run_leaves_the_marker_and_a_reference_run_does_not(package):
    pytest.importorskip("numba")
    from servesim.run import simulate

    simulate(build_scenario({"workload": {"num_requests": 20}, "compiled": "off"}))
    assert not kernel_cache.MARKER.exists()
    simulate(build_scenario({"workload": {"num_requests": 20}, "compiled": "on"}))
    assert kernels_cached()


def test_auto_compiles_from_a_smaller_workload_once_the_kernels_are_cached(monkeypatch):
    monkeypatch.setattr("servesim.fleet.numba_available", lambda: True)
    monkeypatch.setattr("servesim.fleet._compiled_kernels_problem", lambda: None)

    def auto(count: int) -> bool:
        return compiled_pricing(build_scenario({"workload": {"num_requests": count}}))

    assert COMPILED_CACHED_MIN_REQUESTS < COMPILED_MIN_REQUESTS
    monkeypatch.setattr("servesim.fleet.kernels_cached", lambda: True)
    assert auto(COMPILED_CACHED_MIN_REQUESTS) and auto(COMPILED_MIN_REQUESTS)
    assert not auto(COMPILED_CACHED_MIN_REQUESTS - 1)
    monkeypatch.setattr("servesim.fleet.kernels_cached", lambda: False)
    assert not auto(COMPILED_CACHED_MIN_REQUESTS) and not auto(COMPILED_MIN_REQUESTS - 1)
    assert auto(COMPILED_MIN_REQUESTS)
    monkeypatch.setattr("servesim.fleet.numba_available", lambda: False)
    monkeypatch.setattr("servesim.fleet.kernels_cached", lambda: True)
    assert not auto(COMPILED_MIN_REQUESTS)


@needs_numba
def test_simulate_says_when_numba_is_likely_to_compile_first(monkeypatch, capsys):
    """Through the command (in-process): a compiled run with no marker says why it may sit
    silent for seconds; one with the marker, or a reference run, says nothing of it."""
    from servesim.cli import _run

    args = ["simulate", "-n", "3", "--input-len", "32", "--output-len", "4", "--json"]
    for cached, compiled, says in (
        (False, "on", True), (True, "on", False), (False, "off", False), (False, "auto", False)
    ):  # fmt: skip
        monkeypatch.setattr(kernel_cache, "kernels_cached", lambda c=cached: c)
        assert _run([*args, "--compiled", compiled]) == 0
        err = capsys.readouterr().err
        assert ("numba compiles servesim's kernels" in err) is says, (cached, compiled)
