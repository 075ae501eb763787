"""python -m services.tenancy: tenants and active-user admission."""

from services.common.server import main
from services.tenancy.server import build

main("tenancy", build)
