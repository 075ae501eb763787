"""Validate a submitted workflow before anything is stored.

Every refusal names the field (`jobs[2].depends_on`, indexed as submitted) and the
problem; a cycle is named by its members in order. The rules that need no disk run
first; slide checks run last and are injected (`slide_check`), so the rules can be
tested without slides.

Status codes: bad values are INVALID_ARGUMENT; an image_path that resolves inside
the slide roots but names no file is NOT_FOUND (a path outside the roots is
INVALID_ARGUMENT whether or not it exists, so nothing outside leaks); a file that
is there but is no readable slide is INVALID_ARGUMENT; too many jobs or
dependencies is RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from services.common.api.slidelane.v1 import types_pb2
from services.common.auth import is_subject_safe
from services.common.errors import InvalidArgument, NotFound, ResourceExhausted

JOB_TYPES = ("cell_segmentation", "tissue_mask")
MAX_JOBS = 1000
MAX_DEPENDENCIES = 10_000  # edges per workflow; each becomes a row
MAX_NAME_LENGTH = 256
DEFAULT_BRANCH = "main"
# Known params per job type, with a check each value must pass.
PARAMS: dict[str, dict[str, Callable[[Any], bool]]] = {
    # bool is an int in Python, but `"mpp": true` is no pixel size.
    "cell_segmentation": {"mpp": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 100},
    "tissue_mask": {},
}


@dataclass(frozen=True)
class PlannedJob:
    """One job as it will be stored: paths resolved, branch defaulted, dependencies de-duplicated."""

    job_id: str
    job_type: str
    image_path: str
    branch: str
    depends_on: list[str]
    params: dict[str, Any] = field(default_factory=dict)


def _token(value: str, where: str, what: str) -> None:
    if not is_subject_safe(value):
        raise InvalidArgument(
            f"{where} {value!r} is not a valid {what}: use 1-64 letters, digits, '-' or '_' (no '.', '*', '>' or spaces)",
            field=where,
        )


def resolve_in_roots(raw: str, roots: Sequence[Path], where: str) -> Path:
    """The real path of raw, which must lie inside one of the slide roots."""
    path = Path(raw)
    if not path.is_absolute():
        if len(roots) != 1:
            raise InvalidArgument(f"{where} {raw!r} must be an absolute path", field=where)
        path = roots[0] / path
    resolved = path.resolve()  # follows symlinks and `..`, so neither can escape a root
    real_roots = [root.resolve() for root in roots]
    if not any(resolved == root or root in resolved.parents for root in real_roots):
        allowed = ", ".join(str(root) for root in real_roots)
        raise InvalidArgument(f"{where} {raw!r} is outside the slide roots ({allowed})", field=where)
    if not resolved.is_file():
        raise NotFound(f"{where} {raw!r}: no such file", field=where)
    return resolved


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] following depends_on edges, or None.

    Iterative depth-first search: a 1000-job chain must not hit Python's recursion limit.
    """
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        pending = [iter(edges[start])]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                done.add(path[-1])
                on_path.discard(path.pop())
                pending.pop()
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                pending.append(iter(edges[following]))
    return None


def submission_topological_order(jobs: list[PlannedJob]) -> list[PlannedJob]:
    """Submission order, except that a job never precedes its dependencies.

    Lanes run in this order (it becomes lane_seq). Putting dependencies first is
    what makes strict FIFO lanes deadlock-free: the earliest unfinished job always
    has its dependencies finished, so it can run.
    """
    position = {job.job_id: index for index, job in enumerate(jobs)}
    waiting_on = {job.job_id: len(set(job.depends_on)) for job in jobs}
    dependents: dict[str, list[str]] = {job.job_id: [] for job in jobs}
    for job in jobs:
        for dep in set(job.depends_on):
            dependents[dep].append(job.job_id)
    ready = [position[job_id] for job_id, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[PlannedJob] = []
    while ready:
        job = jobs[heapq.heappop(ready)]
        ordered.append(job)
        for dependent in dependents[job.job_id]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    return ordered


def validate_workflow(
    name: str,
    jobs: Sequence[types_pb2.JobSpec],
    slide_roots: Sequence[Path],
    slide_check: Callable[[str], None],
) -> list[PlannedJob]:
    """The normalised plan: jobs in submission order, except that dependencies come first.

    Raises the first problem found (SlidelaneError naming the field).
    """
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"name is longer than {MAX_NAME_LENGTH} characters", field="name")
    if not jobs:
        raise InvalidArgument("a workflow needs at least one job", field="jobs")
    if len(jobs) > MAX_JOBS:
        raise ResourceExhausted(f"a workflow may hold at most {MAX_JOBS} jobs, not {len(jobs)}", field="jobs")
    edges = sum(len(job.depends_on) for job in jobs)
    if edges > MAX_DEPENDENCIES:
        raise ResourceExhausted(f"a workflow may hold at most {MAX_DEPENDENCIES} dependencies, not {edges}", field="jobs")
    seen: dict[str, int] = {}
    for index, job in enumerate(jobs):
        where = f"jobs[{index}].job_id"
        if not job.job_id:
            raise InvalidArgument(f"{where} is required", field=where)
        _token(job.job_id, where, "job id")
        if job.job_id in seen:
            raise InvalidArgument(f"{where} {job.job_id!r} is a duplicate of jobs[{seen[job.job_id]}].job_id", field=where)
        seen[job.job_id] = index
    planned: list[PlannedJob] = []
    for index, job in enumerate(jobs):
        prefix = f"jobs[{index}]"
        if job.job_type not in JOB_TYPES:
            raise InvalidArgument(
                f"{prefix}.job_type {job.job_type!r} is unknown: use one of {', '.join(JOB_TYPES)}",
                field=f"{prefix}.job_type",
            )
        branch = job.branch or DEFAULT_BRANCH
        _token(branch, f"{prefix}.branch", "branch")
        for dep in job.depends_on:
            if dep == job.job_id:
                raise InvalidArgument(f"{prefix}.depends_on: job {job.job_id!r} depends on itself", field=f"{prefix}.depends_on")
            if dep not in seen:
                raise InvalidArgument(f"{prefix}.depends_on names unknown job {dep!r}", field=f"{prefix}.depends_on")
        params = json_format.MessageToDict(job.params) if job.HasField("params") else {}
        allowed = PARAMS[job.job_type]
        for key, value in params.items():
            if key not in allowed:
                known = ", ".join(allowed) or "none"
                raise InvalidArgument(
                    f"{prefix}.params.{key} is not a {job.job_type} parameter (known: {known})",
                    field=f"{prefix}.params.{key}",
                )
            if not allowed[key](value):
                raise InvalidArgument(f"{prefix}.params.{key}={value!r} is out of range", field=f"{prefix}.params.{key}")
        if not job.image_path:
            raise InvalidArgument(f"{prefix}.image_path is required", field=f"{prefix}.image_path")
        planned.append(PlannedJob(job.job_id, job.job_type, job.image_path, branch, list(dict.fromkeys(job.depends_on)), params))
    cycle = find_cycle({job.job_id: job.depends_on for job in planned})
    if cycle:
        index = seen[cycle[0]]
        raise InvalidArgument(f"jobs[{index}].depends_on makes a cycle: {' -> '.join(cycle)}", field=f"jobs[{index}].depends_on")
    # File checks last: they touch the disk, the rules above do not.
    resolved_paths: dict[str, str] = {}
    for index, job in enumerate(planned):
        where = f"jobs[{index}].image_path"
        if job.image_path not in resolved_paths:
            resolved = resolve_in_roots(job.image_path, slide_roots, where)
            try:
                slide_check(str(resolved))
            except Exception as error:  # the slide reader raises its own errors; all mean "unreadable"
                raise InvalidArgument(f"{where} {job.image_path!r} is not a readable slide: {error}", field=where) from None
            resolved_paths[job.image_path] = str(resolved)
    return submission_topological_order([replace(job, image_path=resolved_paths[job.image_path]) for job in planned])
