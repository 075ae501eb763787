"""The launcher's small parts, without processes: log rendering, the port plan."""

from __future__ import annotations

import io
import json
import socket

from services.common.settings import Settings
from services.launcher.logs import MergedLog, render
from services.launcher.ports import check_ports, required_ports


def test_json_line_is_rendered_readably() -> None:
    line = json.dumps(
        {
            "time": "2026-01-02T10:11:12.345Z",
            "level": "warning",
            "service": "scheduler",
            "logger": "x",
            "message": "job retried",
            "tenant": "alice",
            "job_id": "j1",
        }
    )
    text = render("scheduler", line)
    assert text.split(" ", 1)[1] == "scheduler WARN job retried tenant=alice job_id=j1"


def test_foreign_lines_and_tracebacks() -> None:
    assert render("nats", "[12] 2026/01/02 10:11:12.123 [ERR] boom").endswith("10:11:12 nats ERROR boom")
    out = io.StringIO()
    log = MergedLog(out)
    for line in ("Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"):
        log.child_line("gateway", line)
    rows = out.getvalue().splitlines()
    assert "gateway ERROR uncaught exception" in rows[0]
    assert rows[1].startswith("      File")
    assert rows[2].endswith("gateway ERROR ValueError: bad")
    assert log.tail("gateway")[-1].endswith("ValueError: bad")


def test_port_plan_covers_every_process_and_names_the_variable() -> None:
    settings = Settings.from_env({"SLIDELANE_PORT_BASE": "30000", "SLIDELANE_INFERENCE_WORKERS": "2"})
    ports = {p.port: p for p in required_ports(settings)}
    for port in (8000, 30001, 30002, 30003, 30004, 30005, 30009, 30010, 30011, 30101, 30110, 30111, 4322):
        assert port in ports
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        problems = check_ports(required_ports(Settings.from_env({"SLIDELANE_NATS_PORT": str(taken)})))
    assert any(str(taken) in p and "SLIDELANE_NATS_PORT" in p for p in problems), problems


def test_external_nats_needs_no_port_and_clashes_are_reported() -> None:
    external = Settings.from_env({"SLIDELANE_NATS_URL": "nats://10.0.0.1:4222"})
    assert all(p.variable != "SLIDELANE_NATS_PORT" for p in required_ports(external))
    clash = Settings.from_env({"SLIDELANE_PORT": "50051"})
    assert any("wanted by both" in p for p in check_ports(required_ports(clash)))
