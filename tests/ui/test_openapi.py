"""The REST docs: an OpenAPI 3 document generated from the protos' http annotations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.api import annotations_pb2

from services.gateway import http
from tests.ui.helpers import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location("gen_openapi_under_test", ROOT / "scripts" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated():
    module = _generator()
    files = module.load_descriptor_set()
    return module, files, module.build_openapi(files)


def test_every_annotated_public_method_is_documented(generated):
    _, files, document = generated
    expected = set()
    for file in files.file:
        if file.package != "slidelane.v1":
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                if verb:
                    expected.add((verb, getattr(rule, verb), f"{service.name}_{method.name}"))
    found = {(verb, path, op["operationId"]) for path, ops in document["paths"].items() for verb, op in ops.items()}
    assert found == expected
    assert document["openapi"].startswith("3.")


def test_parameters_bodies_and_media_follow_the_protos(generated):
    _, _, document = generated
    paths = document["paths"]
    tile = paths["/api/visualization/{job_id}/tiles/{level}/{col}/{row}"]["get"]
    assert [(p["name"], p["in"]) for p in tile["parameters"]] == [
        ("job_id", "path"),
        ("level", "path"),
        ("col", "path"),
        ("row", "path"),
    ]
    assert list(tile["responses"]["200"]["content"]) == ["image/jpeg"]
    cells = paths["/api/visualization/{job_id}/cells"]["get"]
    assert {p["name"] for p in cells["parameters"] if p["in"] == "query"} == {"x", "y", "width", "height", "max_polygons"}
    create = paths["/api/workflows"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"name", "jobs"}
    job_spec = document["components"]["schemas"]["slidelane.v1.JobSpec"]["properties"]
    assert {"job_id", "job_type", "image_path", "branch", "depends_on", "params"} <= set(job_spec)
    assert job_spec["depends_on"]["type"] == "array"
    assert "description" in job_spec["image_path"]  # proto comments become descriptions
    watch = paths["/api/workflows/{workflow_id}/events"]["get"]
    assert watch["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {p["name"] for p in watch["parameters"]} == {"workflow_id", "after_seq"}
    progress = document["components"]["schemas"]["slidelane.v1.Progress"]["properties"]
    assert progress["tiles_done"] == {"type": "string", "format": "int64", "description": "Tiles finished."}
    assert document["components"]["schemas"]["slidelane.v1.WorkflowState"]["enum"][1] == "WORKFLOW_STATE_QUEUED"
    assert document["components"]["securitySchemes"]["userId"] == {"type": "apiKey", "in": "header", "name": "X-User-ID"}
    assert paths["/health"]["get"]["security"] == []
    for ops in paths.values():
        for op in ops.values():
            assert op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("google.rpc.Status")


def test_every_reference_resolves(generated):
    _, _, document = generated
    schemas = document["components"]["schemas"]

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref:
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


async def test_the_gateway_serves_openapi_docs_and_ui_config(tmp_path: Path):
    app = http.build_app(slide_roots=(tmp_path / "slides",))
    async with TestClient(TestServer(app)) as client:
        reply = await client.get("/openapi.json")
        assert reply.status == 200
        document = await reply.json()
        assert "/api/workflows" in document["paths"]
        config = await (await client.get("/ui-config.json")).json()
        assert config == {"slide_roots": [str(tmp_path / "slides")]}
        docs = await client.get("/docs", allow_redirects=False)
        assert docs.status == 302 and docs.headers["Location"] == "/docs/"
        page = await client.get("/docs/")
        if (http.UI_BUILD / "docs" / "index.html").is_file():
            assert page.status == 200 and "swagger-ui" in await page.text()
        else:
            assert page.status == 404 and "npm run build" in await page.text()
