"""One readable merged log: every child's lines as `HH:MM:SS service LEVEL message key=value ...`.

Services write one JSON object a line (services/common/telemetry.py); NATS and Envoy
write their own text formats. Everything is rendered to the same shape, written to the
launcher's stdout and kept raw per child under <data dir>/logs/<name>.log.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from datetime import datetime
from typing import TextIO

LEVELS = {
    "debug": "DEBUG",
    "dbg": "DEBUG",
    "trace": "DEBUG",
    "trc": "DEBUG",
    "info": "INFO",
    "inf": "INFO",
    "warning": "WARN",
    "warn": "WARN",
    "wrn": "WARN",
    "error": "ERROR",
    "err": "ERROR",
    "critical": "ERROR",
    "ftl": "ERROR",
    "fatal": "ERROR",
}
COLORS = {"DEBUG": "\033[2m", "INFO": "", "WARN": "\033[33m", "ERROR": "\033[31;1m"}
RESET = "\033[0m"
SKIP_KEYS = {"time", "level", "service", "logger", "message"}
# nats-server: "[1234] 2026/01/02 10:11:12.123456 [INF] Server is ready"
NATS_LINE = re.compile(r"^\[\d+\] \S+ (\d\d:\d\d:\d\d)\S* \[(\w+)\] (.*)$")
# envoy: "[2026-01-02 10:11:12.123][123][warning][main] [source/...] message"
ENVOY_LINE = re.compile(r"^\[\S+ (\d\d:\d\d:\d\d)\S*\]\[\d+\]\[(\w+)\]\[[^\]]*\] (?:\[[^\]]*\] )?(.*)$")


# gRPC core (glog): "E1128 18:37:51.773067   18095 file.cc:71] message"
GLOG_LINE = re.compile(r"^([IWEF])\d{4} (\d\d:\d\d:\d\d)\S*\s+\d+ \S+\] (.*)$")
GLOG_LEVELS = {"I": "INFO", "W": "WARN", "E": "ERROR", "F": "ERROR"}


def _clock(iso: str | None) -> str:
    if iso:
        try:
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
        except ValueError:
            pass
    return time.strftime("%H:%M:%S")


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


def render(name: str, line: str) -> str:
    """One child's output line in the merged format (multi-line errors stay indented below)."""
    line = line.rstrip("\r\n")
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = LEVELS.get(str(record.get("level", "info")).lower(), str(record.get("level", "INFO")).upper())
            error = record.pop("error", None)
            extras = " ".join(f"{k}={_value(v)}" for k, v in record.items() if k not in SKIP_KEYS)
            text = f"{_clock(record.get('time'))} {name} {level} {record.get('message', '')}"
            if extras:
                text += f" {extras}"
            if error:
                text += "\n" + "\n".join("    " + row for row in str(error).rstrip().splitlines())
            return text
    match = GLOG_LINE.match(line)
    if match:
        letter, clock, message = match.groups()
        return f"{clock} {name} {GLOG_LEVELS[letter]} {message}"
    for pattern in (NATS_LINE, ENVOY_LINE):
        match = pattern.match(line)
        if match:
            clock, level, message = match.groups()
            return f"{clock} {name} {LEVELS.get(level.lower(), level.upper())} {message}"
    return f"{time.strftime('%H:%M:%S')} {name} INFO {line}"


class MergedLog:
    """Thread-safe writer of the merged log, with the last lines of every child kept for errors."""

    def __init__(self, out: TextIO | None = None, keep: int = 40) -> None:
        self.out = out or sys.stdout
        self.color = hasattr(self.out, "isatty") and self.out.isatty()
        self.keep = keep
        self.tails: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._traceback: set[str] = set()

    def child_line(self, name: str, line: str) -> None:
        line = line.rstrip("\r\n")
        if line.startswith("Traceback (most recent call last)"):
            # An uncaught Python exception on stderr: one ERROR line, the frames indented below.
            self._traceback.add(name)
            text = f"{time.strftime('%H:%M:%S')} {name} ERROR uncaught exception:"
        elif name in self._traceback and (line.startswith((" ", "\t")) or not line):
            text = "    " + line
        elif name in self._traceback:
            self._traceback.discard(name)
            text = f"{time.strftime('%H:%M:%S')} {name} ERROR {line}"
        else:
            text = render(name, line)
        self.tails.setdefault(name, deque(maxlen=self.keep)).append(text)
        self.write(text)

    def launcher(self, level: str, message: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} launcher {level} {message}")

    def write(self, text: str) -> None:
        if self.color:
            level = text.split(" ", 3)[2] if text.count(" ") >= 3 else ""
            if COLORS.get(level):
                text = f"{COLORS[level]}{text}{RESET}"
        with self._lock:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):  # the terminal went away: keep draining the children
                pass

    def tail(self, name: str, lines: int = 15) -> list[str]:
        return list(self.tails.get(name, ()))[-lines:]
