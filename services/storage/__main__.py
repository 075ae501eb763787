"""python -m services.storage: tile results -> merged per-job results and exports."""

from services.common.server import main
from services.storage.server import build

main("storage", build)
