"""Which InstanSeg model a worker runs (SLIDELANE_INSTANSEG_MODEL).

- a folder or .pt path: that TorchScript model;
- a name: $INSTANSEG_BIOIMAGEIO_PATH/<name>/instanseg.pt when it sits there
  (InstanSeg's own layout; "brightfield_nuclei" by default);
- otherwise the model this project trains and ships (models/slidelane_synthetic_nuclei),
  named in every result and log line so no one mistakes it for InstanSeg's own.
Downloading weights at run time is not attempted: machines may be offline.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED_MODEL = "slidelane_synthetic_nuclei"
DEFAULT_MODEL = "brightfield_nuclei"


@dataclass(frozen=True)
class ModelChoice:
    name: str
    path: Path
    version: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _shipped() -> ModelChoice:
    folder = REPO_MODELS / SHIPPED_MODEL
    card = folder / "model.json"
    version = json.loads(card.read_text()).get("version", "unknown") if card.is_file() else "unknown"
    return ModelChoice(SHIPPED_MODEL, folder / "instanseg.pt", str(version))


def choose_model(setting: str) -> ModelChoice:
    requested = setting or DEFAULT_MODEL
    candidate = Path(requested)
    if candidate.suffix == ".pt" and candidate.is_file():
        return ModelChoice(candidate.parent.name, candidate, "local")
    if (candidate / "instanseg.pt").is_file():
        return ModelChoice(candidate.name, candidate / "instanseg.pt", "local")
    if requested == SHIPPED_MODEL:
        return _shipped()
    bioimageio = os.environ.get("INSTANSEG_BIOIMAGEIO_PATH")
    if bioimageio and (Path(bioimageio) / requested / "instanseg.pt").is_file():
        return ModelChoice(requested, Path(bioimageio) / requested / "instanseg.pt", "bioimageio")
    shipped = _shipped()
    log.warning(
        "model %r not found (no INSTANSEG_BIOIMAGEIO_PATH/%s/instanseg.pt); using the shipped synthetic model %s",
        requested,
        requested,
        shipped.label,
    )
    return shipped
