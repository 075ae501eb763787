"""The UI's own checks: type-check + build (client generated from protos/) and vitest."""

from __future__ import annotations

import subprocess

import pytest

from tests.ui.helpers import UI_DIR, build_ui, missing_for_build

pytestmark = pytest.mark.skipif(missing_for_build() is not None, reason=str(missing_for_build()))


@pytest.mark.timeout(900)
def test_the_ui_builds_from_the_protos():
    build_ui()
    dist = UI_DIR / "dist"
    assert (dist / "index.html").is_file()
    assert list((dist / "assets").glob("*.js")), "no bundle"
    assert (dist / "docs" / "swagger-ui-bundle.js").is_file(), "Swagger UI is not in the build"
    generated = UI_DIR / "src" / "gen" / "slidelane" / "v1"
    assert {p.name for p in generated.glob("*_pb.ts")} >= {
        "workflow_service_pb.ts",
        "visualization_service_pb.ts",
        "progress_service_pb.ts",
    }


@pytest.mark.timeout(600)
def test_vitest_unit_tests_pass():
    if not (UI_DIR / "src" / "gen").is_dir():
        build_ui()
    result = subprocess.run(["npx", "vitest", "run"], cwd=UI_DIR, capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
