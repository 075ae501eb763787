"""Resident memory of a process from /proc (Linux): now, peak, and a reset of the peak.

VmHWM is the peak RSS since the process started or since the last reset (writing 5
to /proc/PID/clear_refs, Linux >= 4.0): exact, where sampling RSS can miss a spike.
"""

from __future__ import annotations

import re
from pathlib import Path


def _status_bytes(pid: int | str, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if match is None:
        raise OSError(f"no {field} in /proc/{pid}/status")
    return int(match.group(1)) * 1024


def rss_bytes(pid: int | str = "self") -> int:
    return _status_bytes(pid, "VmRSS")


def peak_rss_bytes(pid: int | str = "self") -> int:
    return _status_bytes(pid, "VmHWM")


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Start the peak again from the current RSS; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
