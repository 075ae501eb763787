"""jetstream.connect's connection callbacks on a real nats-server: closing the connection
at shutdown is no warning; losing the server is one, and the service hears it is down."""

from __future__ import annotations

import asyncio
import logging

from services.common import jetstream
from tests.natsserver import running_nats


async def test_a_drain_at_shutdown_logs_no_warning(nats_url, caplog):
    changes: list[bool] = []

    async def follow(up: bool) -> None:
        changes.append(up)

    nc = await jetstream.connect(nats_url, "tests", follow)
    with caplog.at_level(logging.INFO, logger="services.common.jetstream"):
        await nc.drain()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.common.jetstream"]
    assert (logging.INFO, "NATS connection closed") in records
    assert not [r for r in records if r[0] >= logging.WARNING], records


async def test_losing_the_server_is_a_warning(tmp_path, caplog):
    changes: list[bool] = []

    async def follow(up: bool) -> None:
        changes.append(up)

    with caplog.at_level(logging.INFO, logger="services.common.jetstream"):
        with running_nats(tmp_path / "nats") as url:
            nc = await jetstream.connect(url, "tests", follow)
        for _ in range(50):  # the server is gone; the client notices within moments
            if changes:
                break
            await asyncio.sleep(0.1)
        await nc.close()
    assert changes and changes[0] is False
    assert (logging.WARNING, "NATS disconnected") in [(r.levelno, r.getMessage()) for r in caplog.records]
