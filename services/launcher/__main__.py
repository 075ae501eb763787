"""python -m services.launcher: start the whole local cluster; Ctrl-C stops it."""

import os

# The launcher forks children while its own gRPC health-check channels are open;
# gRPC's fork handlers are not needed (children exec at once) and only print warnings.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from services.launcher.app import main  # noqa: E402

main()
