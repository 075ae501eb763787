"""What the UI tests need on the machine: node, the UI's npm packages, chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "services" / "gateway" / "ui"
OUTPUT = ROOT / "test-output" / "ui"
INSTALL_HINT = "apt-get install -y chromium nodejs npm; (cd services/gateway/ui && npm install), or make test"


def node() -> str | None:
    return shutil.which("node")


def chromium() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def missing_for_build() -> str | None:
    """Why the UI cannot be built here, or None."""
    if node() is None or shutil.which("npm") is None:
        return f"node/npm not installed ({INSTALL_HINT})"
    if not (UI_DIR / "node_modules" / ".bin" / "vite").exists():
        return f"the UI's npm packages are not installed ({INSTALL_HINT})"
    return None


def missing_for_browser() -> str | None:
    why = missing_for_build()
    if why:
        return why
    if not (UI_DIR / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed ({INSTALL_HINT})"
    if chromium() is None:
        return f"chromium is not installed ({INSTALL_HINT})"
    return None


def build_ui() -> None:
    """npm run build: generate the API client from protos/, type-check, bundle into dist/."""
    if os.environ.get("SLIDELANE_UI_SKIP_BUILD") and (UI_DIR / "dist" / "index.html").is_file():
        return
    result = subprocess.run(["npm", "run", "build"], cwd=UI_DIR, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"npm run build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
