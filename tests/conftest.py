"""Fixtures shared by the whole suite.

`cluster`: the whole system (launcher, NATS, Envoy, every service) started once per
session on free ports, in a temp dir; shared, so do not stop or reconfigure it.
`cluster_factory`: start your own, e.g. `cluster_factory(env={"SLIDELANE_MAX_ACTIVE_USERS": "1"})`;
each one is stopped after the test. See tests/cluster.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.cluster import Cluster, launch


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = launch(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Cluster:
        running = launch(tmp_path / f"cluster{len(started)}", env, timeout)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
