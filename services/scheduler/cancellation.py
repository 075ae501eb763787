"""Tell planners and workers to stop a cancelled job's tile work.

Core NATS (not JetStream): a worker that misses the notice still finds the job
cancelled when its results reach storage, which drops them; the notice only makes
the stop fast (seconds, not the rest of the job).
"""

from __future__ import annotations

from nats.aio.client import Client as Nats

from services.common.jetstream import cancel_subject


class CancelNotifier:
    def __init__(self, nats: Nats) -> None:
        self.nats = nats

    async def cancel_jobs(self, tenant: str, job_ids: list[str]) -> None:
        for job_id in job_ids:
            await self.nats.publish(cancel_subject(tenant, job_id), b"")
        await self.nats.flush()
