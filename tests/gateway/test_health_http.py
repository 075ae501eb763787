"""The gateway's GET /health: the status code follows the verdict, the body keeps the detail."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from services.common.api.slidelane.v1 import system_service_pb2
from services.gateway import http

Component = system_service_pb2.ComponentHealth


def _check(status: str, *components: Component):  # type: ignore[no-untyped-def]
    async def check() -> system_service_pb2.GetHealthResponse:
        return system_service_pb2.GetHealthResponse(status=status, components=list(components))

    return check


async def test_serving_is_200_and_not_serving_is_503_with_the_components(tmp_path):
    up = Component(name="storage", healthy=True, essential=True, detail="SERVING")
    down = Component(name="storage", healthy=False, essential=True, detail="unreachable: DEADLINE_EXCEEDED")
    gpu = Component(name="gpu", healthy=False, essential=False, detail="0 of 1 inference workers on a GPU")
    for check, code in ((_check("SERVING", up, gpu), 200), (_check("NOT_SERVING", down, gpu), 503)):
        async with TestClient(TestServer(http.build_app((tmp_path,), health=check))) as client:
            reply = await client.get("/health")
            assert reply.status == code
            assert reply.headers["Cache-Control"] == "no-store"
            body = await reply.json()
    assert body == {
        "status": "NOT_SERVING",
        "components": [
            {"name": "storage", "healthy": False, "essential": True, "detail": "unreachable: DEADLINE_EXCEEDED"},
            {"name": "gpu", "healthy": False, "essential": False, "detail": "0 of 1 inference workers on a GPU"},
        ],
    }
