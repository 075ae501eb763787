"""The UI in a real browser against the real system (tests/ui/scenario.mjs).

Debian's chromium driven by playwright-core: sign in, create a workflow on a generated
slide, watch the progress bars move to done, open the viewer and check the overlays
change the picture, try a bad workflow and see the field error, survive a stopped
gateway, sign in as another user and see none of it. Screenshots of every screen land
in test-output/ui/.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.slides import write_test_slide
from tests.ui.helpers import OUTPUT, ROOT, build_ui, chromium, missing_for_browser

pytestmark = pytest.mark.skipif(missing_for_browser() is not None, reason=str(missing_for_browser()))


@pytest.mark.timeout(1200)
def test_the_ui_end_to_end(cluster_factory):
    build_ui()  # before the gateway starts: it serves ui/dist when it is there
    cluster = cluster_factory()
    slide = write_test_slide(cluster.slide_root / "ui-demo.svs", 2048, 1536, tissue=0.5, seed=11)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    pids = cluster.pids()
    launcher, gateway = cluster.proc.pid, pids.get("gateway")
    env = {
        **os.environ,
        "SLIDELANE_URL": cluster.public,
        "SLIDE_PATH": str(slide.path),
        "OUT_DIR": str(OUTPUT),
        "CHROMIUM": str(chromium()),
        "WORKFLOW_TIMEOUT_S": "420",
    }
    if gateway:
        # A real outage: hold the launcher (so it does not restart the gateway at once),
        # kill the gateway; resuming the launcher brings it back.
        env["STOP_GATEWAY_CMD"] = f"kill -STOP {launcher} && kill -9 {gateway}"
        env["START_GATEWAY_CMD"] = f"kill -CONT {launcher}"
    try:
        result = subprocess.run(
            ["node", str(ROOT / "tests" / "ui" / "scenario.mjs")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1100,
        )
    finally:
        if gateway:
            subprocess.run(["kill", "-CONT", str(launcher)], check=False)
    report = f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}\n--- launcher log ---\n{cluster.log_tail(40)}"
    assert result.returncode == 0, report
    assert "FAIL" not in result.stdout, report
