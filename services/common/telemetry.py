"""Structured logs (one JSON object a line) and the per-service Prometheus endpoint.

Log records may carry tenant, workflow_id, job_id, trace_id through `extra=`; they
are copied into the JSON line so a log search can follow one workflow.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import start_http_server

from services.common.tracing import current_trace_id

CONTEXT_FIELDS = ("tenant", "workflow_id", "job_id", "trace_id", "method", "code", "reason", "worker_id", "model")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if "trace_id" not in line and (trace_id := current_trace_id()):
            line["trace_id"] = trace_id
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(service: str, log_format: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "asyncio", "nats", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def start_metrics_server(port: int) -> None:
    """Serve this process's Prometheus registry on 127.0.0.1-or-all:port/metrics (0 = off)."""
    if port:
        start_http_server(port)
