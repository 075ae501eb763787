"""`slidelane`: the command-line client (gRPC to the public port).

    slidelane [--server HOST:PORT] [--user ID] submit FILE.json|FILE.yaml [--watch]
    slidelane list | get WORKFLOW_ID | cancel WORKFLOW_ID | watch WORKFLOW_ID
    slidelane results JOB_ID --out DIR

The user comes from --user or SLIDELANE_USER. Errors print as one line on stderr
and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import grpc
import yaml
from google.protobuf import json_format

from services.cli.progress import watch_with_bars
from services.common.api.slidelane.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    types_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from services.common.errors import field_violations


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slidelane", description="Slidelane command-line client")
    parser.add_argument(
        "--server", default=os.environ.get("SLIDELANE_SERVER", f"127.0.0.1:{os.environ.get('SLIDELANE_PORT', '8000')}")
    )
    parser.add_argument("--user", default=os.environ.get("SLIDELANE_USER"), help="your user id (or SLIDELANE_USER)")
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a workflow from a JSON or YAML file")
    submit.add_argument("file", type=Path)
    submit.add_argument("--watch", action="store_true", help="watch it until it ends")
    commands.add_parser("list", help="list your workflows")
    for name, text in (("get", "show a workflow"), ("cancel", "cancel a workflow"), ("watch", "watch a workflow live")):
        command = commands.add_parser(name, help=text)
        command.add_argument("workflow_id")
    results = commands.add_parser("results", help="download a job's results (JSON and GeoJSON)")
    results.add_argument("job_id", help="the job's global id (see `get`)")
    results.add_argument("--out", type=Path, default=Path("."))
    return parser


def _load_workflow(path: Path) -> workflow_service_pb2.CreateWorkflowRequest:
    try:
        text = path.read_text()
    except OSError as error:
        raise SystemExit(f"error: cannot read {path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise SystemExit(
            f"error: {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {error}"
        ) from None
    try:
        return json_format.ParseDict(document, workflow_service_pb2.CreateWorkflowRequest())
    except json_format.ParseError as error:
        raise SystemExit(f"error: {path}: {error}") from None


def _state(value: int, enum) -> str:  # type: ignore[no-untyped-def]
    return enum.Name(value).split("_STATE_", 1)[-1]


def _print_workflow(workflow: types_pb2.Workflow) -> None:
    queued = f" (admission queue position {workflow.queue_position})" if workflow.queue_position else ""
    print(f"{workflow.workflow_id}  {workflow.name}  {_state(workflow.state, types_pb2.WorkflowState)}{queued}")
    for job in workflow.jobs:
        total = job.progress.tiles_total
        progress = f" {job.progress.tiles_done}/{total} tiles" if total else ""
        error = f"  error: {job.error}" if job.error else ""
        state = _state(job.state, types_pb2.JobState)
        print(f"  {job.job_id:<20} {job.job_type:<18} branch={job.branch:<10} {state:<16} id={job.id}{progress}{error}")


async def _run(args: argparse.Namespace) -> int:
    if not args.user:
        raise SystemExit("error: no user: pass --user ID or set SLIDELANE_USER")
    metadata = (("x-user-id", args.user),)
    async with grpc.aio.insecure_channel(args.server) as channel:
        workflows = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        if args.command == "submit":
            reply = await workflows.CreateWorkflow(_load_workflow(args.file), metadata=metadata)
            _print_workflow(reply.workflow)
            if args.watch:
                return await watch_with_bars(workflows, reply.workflow.workflow_id, metadata)
        elif args.command == "list":
            reply = await workflows.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=metadata)
            for workflow in reply.workflows:
                _print_workflow(workflow)
        elif args.command == "get":
            reply = await workflows.GetWorkflow(
                workflow_service_pb2.GetWorkflowRequest(workflow_id=args.workflow_id), metadata=metadata
            )
            _print_workflow(reply.workflow)
        elif args.command == "cancel":
            reply = await workflows.CancelWorkflow(
                workflow_service_pb2.CancelWorkflowRequest(workflow_id=args.workflow_id), metadata=metadata
            )
            _print_workflow(reply.workflow)
        elif args.command == "watch":
            return await watch_with_bars(workflows, args.workflow_id, metadata)
        elif args.command == "results":
            args.out.mkdir(parents=True, exist_ok=True)
            job = (await jobs.GetJob(job_service_pb2.GetJobRequest(job_id=args.job_id), metadata=metadata)).job
            for fmt, suffix in (
                ("json", "segmentation.json" if job.job_type == "cell_segmentation" else "tissue.json"),
                ("geojson", "cells.geojson" if job.job_type == "cell_segmentation" else "tissue.geojson"),
            ):
                target = args.out / f"{job.workflow_id}_{job.job_id}_{suffix}"
                with target.open("wb") as handle:
                    async for chunk in jobs.GetJobResults(
                        job_service_pb2.GetJobResultsRequest(job_id=args.job_id, format=fmt), metadata=metadata
                    ):
                        handle.write(chunk.data)
                print(target)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except grpc.aio.AioRpcError as error:
        fields = field_violations(error)
        where = f" [{', '.join(fields)}]" if fields else ""
        print(f"error: {error.code().name}: {error.details()}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
