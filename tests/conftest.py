"""Fixtures shared by the whole suite.

`cluster`: the whole system (launcher, NATS, Envoy, every service) started once per
session on free ports, in a temp dir; shared, so do not stop or reconfigure it.
`cluster_factory`: start your own, e.g. `cluster_factory(env={"SLIDELANE_MAX_ACTIVE_USERS": "1"})`;
each one is stopped after the test. See tests/cluster.py.
`nats_url`: a real nats-server with JetStream of the test's own (tests/natsserver.py).
`spans`: the spans this process finishes during the test (an in-memory exporter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.tracing import setup_tracing
from tests.cluster import Cluster, launch
from tests.natsserver import running_nats


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


@pytest.fixture
def to_thread_calls(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The functions asyncio.to_thread is asked to run (their names), run as before."""
    calls: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(function, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(getattr(function, "__name__", repr(function)))
        return await real_to_thread(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    return calls


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with running_nats(tmp_path / "nats") as url:
        yield url


class SpanRecorder:
    """The spans finished in this process, read through the process's tracer provider."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in self.finished()]}"
        return found[0]


@pytest.fixture(scope="session")
def _span_exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    # One exporter for the session: a tracer provider, once installed, stays for the process.
    exporter = InMemorySpanExporter()
    return setup_tracing("tests", exporter), exporter


@pytest.fixture
def spans(_span_exporter: tuple[TracerProvider, InMemorySpanExporter]) -> SpanRecorder:
    provider, exporter = _span_exporter
    provider.force_flush()
    exporter.clear()
    return SpanRecorder(provider, exporter)
