"""python -m services.gateway: the public API behind Envoy."""

from services.common.server import main
from services.gateway.server import build

main("gateway", build)
