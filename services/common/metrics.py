"""Every Prometheus metric Slidelane exports, defined once.

Each service updates the ones it owns and serves its own registry on its metrics
port (gRPC port + 100); the gateway's /metrics is the public one through Envoy.
Labels are bounded: tenant and branch (lanes), job type, status, stream, gRPC
method and code, worker replica id; never job or workflow ids.

| name | type | labels | meaning |
| --- | --- | --- | --- |
| workflow_jobs_total | counter | job_type, status | jobs that reached a final state |
| workflow_jobs_active | gauge | | jobs RUNNING now |
| workflow_queue_depth | gauge | tenant_id, branch | jobs waiting in a lane |
| job_latency_seconds | histogram | job_type | start to finish of a job |
| job_dispatch_wait_seconds | histogram | job_type | a dispatched (RUNNING) job's wait in the queue until a planner takes it up |
| active_users | gauge | | tenants admitted now |
| admission_queue_length | gauge | | tenants waiting for admission |
| tiles_processed_total | counter | worker_id | tiles segmented |
| tile_inference_seconds | histogram | | model time per tile |
| inference_batch_size | histogram | | tiles per forward pass |
| worker_busy_ratio | gauge | worker_id | share of the last minute spent segmenting |
| jetstream_consumer_pending | gauge | stream | messages not yet delivered |
| jetstream_consumer_redelivered | gauge | stream | messages delivered more than once |
| watchers_connected | gauge | | open Watch streams on the gateway |
| grpc_server_requests_total | counter | service, method, code | gRPC calls served |
| grpc_server_request_seconds | histogram | service, method | gRPC call latency |
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_TOTAL = Counter("workflow_jobs", "Jobs that reached a final state", ["job_type", "status"])
JOBS_ACTIVE = Gauge("workflow_jobs_active", "Jobs running now")
QUEUE_DEPTH = Gauge("workflow_queue_depth", "Jobs waiting in a branch lane", ["tenant_id", "branch"])
JOB_LATENCY = Histogram(
    "job_latency_seconds",
    "Seconds from a job's start to its end",
    ["job_type"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
# A job is RUNNING from its dispatch; with every planner slot busy it then waits in the
# DISPATCH stream. This is that wait: when it grows, the workers are too few for the lanes.
JOB_DISPATCH_WAIT = Histogram(
    "job_dispatch_wait_seconds",
    "Seconds a dispatched job waited in the queue until a planner took it up",
    ["job_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ACTIVE_USERS = Gauge("active_users", "Tenants admitted now")
ADMISSION_QUEUE = Gauge("admission_queue_length", "Tenants waiting for admission")
TILES_PROCESSED = Counter("tiles_processed", "Tiles segmented", ["worker_id"])
TILE_INFERENCE = Histogram("tile_inference_seconds", "Model seconds per tile", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
BATCH_SIZE = Histogram("inference_batch_size", "Tiles per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64))
WORKER_BUSY = Gauge("worker_busy_ratio", "Share of the last minute spent segmenting", ["worker_id"])
CONSUMER_PENDING = Gauge("jetstream_consumer_pending", "Messages not yet delivered", ["stream"])
CONSUMER_REDELIVERED = Gauge("jetstream_consumer_redelivered", "Messages delivered more than once", ["stream"])
WATCHERS = Gauge("watchers_connected", "Open Watch streams")
GRPC_REQUESTS = Counter("grpc_server_requests", "gRPC calls served", ["service", "method", "code"])
GRPC_LATENCY = Histogram("grpc_server_request_seconds", "gRPC call latency", ["service", "method"])
