"""Storage lifecycle: NATS up, result store ready, then serve and consume results."""

from __future__ import annotations

from services.common.api.slidelane.internal.v1 import storage_pb2_grpc
from services.common.server import ServiceApp
from services.storage.consumer import ResultsConsumer
from services.storage.merge import ResultMerger
from services.storage.servicer import StorageServicer
from services.storage.store import LocalDirectoryStore


async def build(app: ServiceApp) -> None:
    js = await app.connect_nats()
    assert app.nats is not None
    store = LocalDirectoryStore(app.settings.results_dir)
    merger = ResultMerger(app.settings.data_dir / "spool", store)
    app.add_service(
        storage_pb2_grpc.add_StorageServiceServicer_to_server,
        StorageServicer(store, merger),
        "slidelane.internal.v1.StorageService",
    )
    app.add_background(ResultsConsumer(js, app.nats, merger).run)
