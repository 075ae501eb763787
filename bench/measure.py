"""Measurements shared by the benchmarks."""

from __future__ import annotations

import psutil


class CpuMeter:
    """CPU seconds of named process trees between start() and stop() (processes that exit
    meanwhile are not counted: the benchmark's processes live through the run)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.trees = {name: psutil.Process(pid) for name, pid in pids.items()}

    def _read(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for name, root in self.trees.items():
            for process in [root, *root.children(recursive=True)]:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                seconds[name] = seconds.get(name, 0.0) + times.user + times.system
        return seconds

    def start(self) -> None:
        self.before = self._read()

    def seconds(self) -> dict[str, float]:
        """CPU seconds each tree spent since start(), largest first."""
        after = self._read()
        spent = {name: after[name] - self.before.get(name, 0.0) for name in after}
        return dict(sorted(spent.items(), key=lambda kv: -kv[1]))

    def per_job_ms(self, jobs: int) -> dict[str, float]:
        return {name: round(seconds * 1000 / max(jobs, 1), 1) for name, seconds in self.seconds().items()}
