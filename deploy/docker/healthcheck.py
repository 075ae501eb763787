"""Container health check of a Slidelane service: grpc.health.v1 Check on its own port.

Exit 0 when the service answers SERVING, 1 otherwise. Compose runs it as the
healthcheck; Kubernetes uses its native gRPC probes instead.

    python /app/deploy/docker/healthcheck.py [PORT]   (default: $SLIDELANE_GRPC_PORT)
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SLIDELANE_GRPC_PORT", "")
    if not port:
        print("healthcheck: no port (pass one or set SLIDELANE_GRPC_PORT)", file=sys.stderr)
        return 1
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as error:
            print(f"healthcheck: {error.code().name}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
