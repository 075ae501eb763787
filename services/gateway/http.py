"""The gateway's plain-HTTP side, behind Envoy: the static UI at / and /metrics."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HERE = Path(__file__).resolve().parent
UI_BUILD = HERE / "ui" / "dist"
PLACEHOLDER = HERE / "static"


def static_root() -> Path:
    """The built UI when present, else the placeholder page."""
    return UI_BUILD if (UI_BUILD / "index.html").is_file() else PLACEHOLDER


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app() -> web.Application:
    root = static_root()

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", index)
    app.router.add_static("/", root, show_index=False)
    return app


async def start_http(port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()
    except OSError as error:
        raise SystemExit(f"gateway: cannot listen for HTTP on port {port} ({error}); is the port taken?") from None
    return runner
