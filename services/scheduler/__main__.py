"""python -m services.scheduler: workflows, jobs, branch lanes, dispatch, retries."""

from services.common.server import main
from services.scheduler.server import build

main("scheduler", build)
