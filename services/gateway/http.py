"""The gateway's plain-HTTP side, behind Envoy: the static UI at /, /metrics, /health,
and the REST docs: /openapi.json (generated from the protos' http annotations by
scripts/gen_openapi.py, once per process) and Swagger UI at /docs (swagger-ui-dist,
copied into the UI build under docs/).

GET /health is served here rather than transcoded from SystemService.GetHealth: it
must answer 503 when an essential part is down, with the detail in the body, and the
transcoder gives either 200 or an error status without the message."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.api.slidelane.v1 import system_service_pb2

HealthCheck = Callable[[], Awaitable[system_service_pb2.GetHealthResponse]]

HERE = Path(__file__).resolve().parent
UI_BUILD = HERE / "ui" / "dist"
PLACEHOLDER = HERE / "static"
OPENAPI_SCRIPT = HERE.parent.parent / "scripts" / "gen_openapi.py"


def static_root() -> Path:
    """The built UI when present, else the placeholder page."""
    return UI_BUILD if (UI_BUILD / "index.html").is_file() else PLACEHOLDER


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _generate_openapi() -> bytes:
    spec = importlib.util.spec_from_file_location("slidelane_gen_openapi", OPENAPI_SCRIPT)
    if spec is None or spec.loader is None or not OPENAPI_SCRIPT.is_file():
        raise FileNotFoundError(OPENAPI_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.dumps(module.generate(), indent=1).encode()


def _openapi_handler():  # type: ignore[no-untyped-def]
    cached: list[bytes] = []
    lock = asyncio.Lock()

    async def openapi(_request: web.Request) -> web.Response:
        async with lock:
            if not cached:
                try:
                    cached.append(await asyncio.to_thread(_generate_openapi))
                except Exception as error:  # answer why instead of a bare 500
                    return web.Response(status=503, text=f"cannot generate the OpenAPI document: {error}\n")
        return web.Response(body=cached[0], content_type="application/json", headers={"Cache-Control": "no-cache"})

    return openapi


def _health_handler(check: HealthCheck):  # type: ignore[no-untyped-def]
    async def health(_request: web.Request) -> web.Response:
        reply = await check()
        # The JSON the transcoder gave before: proto field names, every field printed.
        body = json_format.MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        return web.json_response(body, status=200 if reply.status == "SERVING" else 503, headers={"Cache-Control": "no-store"})

    return health


def _ui_config(slide_roots: tuple[Path, ...] | None) -> bytes:
    """What the UI cannot learn from the API: the folders image_path may point into."""
    if slide_roots is None:
        from services.common.settings import Settings

        slide_roots = Settings.from_env().slide_roots
    return json.dumps({"slide_roots": [str(p) for p in slide_roots]}).encode()


def build_app(slide_roots: tuple[Path, ...] | None = None, health: HealthCheck | None = None) -> web.Application:
    """The HTTP routes; without `health` there is no /health (for tests of the others)."""
    root = static_root()
    ui_config = _ui_config(slide_roots)

    async def config(_request: web.Request) -> web.Response:
        return web.Response(body=ui_config, content_type="application/json", headers={"Cache-Control": "no-cache"})

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    async def docs(_request: web.Request) -> web.StreamResponse:
        page = UI_BUILD / "docs" / "index.html"
        if not page.is_file():
            return web.Response(
                status=404,
                text="Swagger UI is part of the UI build: run `make ui` (npm install && npm run build in services/gateway/ui). "
                "The OpenAPI document itself is at /openapi.json.\n",
            )
        return web.FileResponse(page)

    async def docs_slash(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/docs/")

    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    if health is not None:
        app.router.add_get("/health", _health_handler(health))
    app.router.add_get("/openapi.json", _openapi_handler())
    app.router.add_get("/ui-config.json", config)
    app.router.add_get("/docs", docs_slash)
    app.router.add_get("/docs/", docs)
    app.router.add_get("/", index)
    app.router.add_static("/", root, show_index=False)
    return app


async def start_http(port: int, slide_roots: tuple[Path, ...] | None = None, health: HealthCheck | None = None) -> web.AppRunner:
    runner = web.AppRunner(build_app(slide_roots, health), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()
    except OSError as error:
        raise SystemExit(f"gateway: cannot listen for HTTP on port {port} ({error}); is the port taken?") from None
    return runner
