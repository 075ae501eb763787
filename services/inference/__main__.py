"""python -m services.inference: one inference replica (planner + tile worker)."""

from services.common.server import main
from services.inference.server import build

main("inference", build)
