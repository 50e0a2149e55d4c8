"""A worker's share of CPUs for TensorFlow's pools: affinity, cgroup quota, workers on the host, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulsetrain.cpus import cpu_share, quota_cpus, read_cpu_max, tensorflow_threads, workers_per_host


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5),
    ("", None), ("garbage", None), ("x 100000", None), ("0 100000", None), ("100000 0", None),
])
def test_quota_cpus_reads_cgroup_v2_cpu_max(cpu_max: str, expected: float | None) -> None:
    assert quota_cpus(cpu_max) == expected


@pytest.mark.parametrize(("affinity", "cpu_max", "per_host", "expected"), [
    (64, "200000 100000", 1, 2),  # a pod limited to 2 CPUs on a 64-core node
    (64, "150000 100000", 1, 2),  # 1.5 CPUs: rounded up, the quota allows bursts of both
    (2, "max 100000", 2, 1),  # the test machine, a local gang of 2
    (2, None, 1, 2),  # no cgroup file
    (4, "800000 100000", 1, 4),  # a quota above the affinity: the affinity
    (2, None, 8, 1),  # more workers than CPUs: at least one thread each
    (16, "50000 100000", 1, 1),
])
def test_cpu_share(affinity: int, cpu_max: str | None, per_host: int, expected: int) -> None:
    assert cpu_share(affinity, cpu_max, per_host) == expected


def test_workers_per_host_defaults_to_one_and_survives_nonsense() -> None:
    assert workers_per_host({}) == 1
    assert workers_per_host({"PULSETRAIN_WORKERS_PER_HOST": "3"}) == 3
    assert workers_per_host({"PULSETRAIN_WORKERS_PER_HOST": "two"}) == 1
    assert workers_per_host({"PULSETRAIN_WORKERS_PER_HOST": "0"}) == 1


def test_tensorflow_own_settings_win() -> None:
    assert tensorflow_threads({"TF_NUM_INTRAOP_THREADS": "3"}) is None
    assert tensorflow_threads({"TF_NUM_INTEROP_THREADS": "1"}) is None
    assert tensorflow_threads({"PULSETRAIN_WORKERS_PER_HOST": "1000"}) == 1


def test_the_limit_is_read_from_cgroup_v2_else_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "cpu.max", tmp_path / "cpu"
    assert read_cpu_max(v2, v1) is None
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert read_cpu_max(v2, v1) == "max 100000"
    (v1 / "cpu.cfs_quota_us").write_text("250000\n")
    assert quota_cpus(read_cpu_max(v2, v1) or "") == 2.5
    v2.write_text("100000 100000\n")  # v2 first
    assert read_cpu_max(v2, v1) == "100000 100000\n"
