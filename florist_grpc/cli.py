"""florist-grpc serve | agent | demo | make-data | job ... | train ... | logs ..."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from florist_grpc.config import (
    add_agent_arguments,
    add_serve_arguments,
    agent_settings_from_args,
    env_default,
    settings_from_args,
)
from florist_grpc.fl.make_data import add_make_data_arguments
from florist_grpc.model_download import add_model_command

log = logging.getLogger("florist_grpc")


# --- serve / agent ------------------------------------------------------------------------------------------------


async def _serve_until_signal(start: Any, stop: Any, ready_line: Callable[[], str]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    print(ready_line(), flush=True)
    await stopping.wait()
    log.info("shutting down")
    await stop()


def cmd_serve(args: argparse.Namespace) -> int:
    from florist_grpc.api.auth import AuthFileError
    from florist_grpc.server import ControlPlane

    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plane = ControlPlane(settings)
    try:
        asyncio.run(
            _serve_until_signal(
                plane.start, plane.stop, lambda: f"florist-grpc listening on {settings.host}:{plane.port}"
            )
        )
    except (AuthFileError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from florist_grpc.agent import Agent
    from florist_grpc.agent.session import Replaced

    try:
        settings = agent_settings_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        agent = Agent(settings)
        await agent.start()
        session = asyncio.create_task(agent.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, session.cancel)
        try:
            await session
        except asyncio.CancelledError:
            log.info("shutting down")
        except Replaced as exc:
            # Leave the clients and the site's Redis running: the agent that replaced us may adopt them.
            print(f"error: another agent connected as {settings.name}: {exc}", file=sys.stderr)
            return 1
        await agent.stop()
        return 0

    try:
        return asyncio.run(run())
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# --- client commands ----------------------------------------------------------------------------------------------


def _channel(args: argparse.Namespace) -> grpc.Channel:
    return grpc.insecure_channel(args.address)


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {args.token}"),) if args.token else ()


def _print(args: argparse.Namespace, message: Message, text: str) -> None:
    if args.output == "json":
        print(json_format.MessageToJson(message, preserving_proto_field_name=True))
    else:
        print(text)


def describe_rpc_error(exc: grpc.RpcError) -> str:
    """CODE: message, plus one line per field violation."""
    from florist_grpc.domain.errors import FailedPrecondition, InvalidArgument
    from florist_grpc.rpc_errors import from_rpc_error

    code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
    error = from_rpc_error(exc)
    lines = [f"{code}: {exc.details() if isinstance(exc, grpc.Call) else exc}"]
    if isinstance(error, InvalidArgument | FailedPrecondition):
        lines += [f"  {v.field}: {v.description}" for v in error.violations]
    return "\n".join(lines)


def _job_line(job: Any) -> str:
    from florist_grpc.proto.florist.v1 import job_pb2

    return f"{job.id}  {job_pb2.JobState.Name(job.state)}  {job.model}/{job.strategy}  {len(job.clients)} client(s)"


def load_job_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    body = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(body, dict):
        raise ValueError(f"{path}: expected an object")
    return body if "job" in body else {"job": body}


def cmd_job(args: argparse.Namespace) -> int:
    from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    stub = job_service_pb2_grpc.JobServiceStub(_channel(args))
    md = _metadata(args)
    if args.job_command == "create":
        request = json_format.ParseDict(load_job_file(Path(args.file)), job_service_pb2.CreateJobRequest())
        created = stub.CreateJob(request, metadata=md, timeout=30).job
        _print(args, created, created.id)
    elif args.job_command == "get":
        job = stub.GetJob(job_service_pb2.GetJobRequest(job_id=args.job_id), metadata=md, timeout=30).job
        _print(args, job, _job_line(job) + (f"\n  error: {job.error_message}" if job.error_message else ""))
    elif args.job_command == "list":
        state = job_pb2.JobState.Value(f"JOB_STATE_{args.state.upper()}" if args.state else "JOB_STATE_UNSPECIFIED")
        response = stub.ListJobs(
            job_service_pb2.ListJobsRequest(page_size=args.page_size, page_token=args.page_token, state=state),
            metadata=md,
            timeout=30,
        )
        text = "\n".join(_job_line(j) for j in response.jobs)
        if response.next_page_token:
            text += f"\nnext page: --page-token {response.next_page_token}"
        _print(args, response, text)
    elif args.job_command == "delete":
        stub.DeleteJob(job_service_pb2.DeleteJobRequest(job_id=args.job_id), metadata=md, timeout=30)
        print(f"deleted {args.job_id}")
    return 0


def stream_events(
    channel: grpc.Channel, job_id: str, metadata: tuple[tuple[str, str], ...], after: int = 0, reconnects: int = 30
) -> Iterator[Any]:
    """Every event of the job; on UNAVAILABLE, reconnects with after_sequence = the last one seen."""
    from florist_grpc.proto.florist.v1 import training_service_pb2, training_service_pb2_grpc

    stub = training_service_pb2_grpc.TrainingServiceStub(channel)
    while True:
        try:
            request = training_service_pb2.StreamMetricsRequest(job_id=job_id, after_sequence=after)
            for response in stub.StreamMetrics(request, metadata=metadata):
                after = response.event.sequence
                yield response.event
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or reconnects <= 0:
                raise
            reconnects -= 1
            grpc.channel_ready_future(channel).result(timeout=30)


def watch(channel: grpc.Channel, job_id: str, metadata: tuple[tuple[str, str], ...], emit: Any = print) -> int:
    from florist_grpc.progress import Progress
    from florist_grpc.proto.florist.v1 import job_pb2

    progress = Progress(emit)
    for event in stream_events(channel, job_id, metadata):
        progress.apply(event)
    for line in progress.summary():
        emit(line)
    emit(f"final state: {job_pb2.JobState.Name(progress.state)}")
    return 0 if progress.state == job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY else 1


def cmd_train(args: argparse.Namespace) -> int:
    from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
    from florist_grpc.proto.florist.v1 import training_service_pb2_grpc

    channel = _channel(args)
    stub = training_service_pb2_grpc.TrainingServiceStub(channel)
    md = _metadata(args)
    if args.train_command == "start":
        response = stub.StartTraining(pb.StartTrainingRequest(job_id=args.job_id), metadata=md, timeout=120)
        _print(args, response, f"server {response.server_uuid}, clients {' '.join(response.client_uuids)}")
        return 0
    if args.train_command == "stop":
        job = stub.StopTraining(pb.StopTrainingRequest(job_id=args.job_id), metadata=md, timeout=120).job
        _print(args, job, _job_line(job))
        return 0
    return watch(channel, args.job_id, md)


def cmd_logs(args: argparse.Namespace) -> int:
    from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
    from florist_grpc.proto.florist.v1 import training_service_pb2_grpc

    stub = training_service_pb2_grpc.TrainingServiceStub(_channel(args))
    source = pb.LogSource(client_index=args.client) if args.client is not None else pb.LogSource(server=True)
    request = pb.StreamLogsRequest(job_id=args.job_id, source=source, offset=args.offset, follow=args.follow)
    for chunk in stub.StreamLogs(request, metadata=_metadata(args)):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
    return 0


def cmd_make_data(args: argparse.Namespace) -> int:
    from florist_grpc.fl.make_data import write_from_args

    for path in write_from_args(args):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from florist_grpc.demo import run_demo

    return asyncio.run(run_demo(Path(args.data_dir), args.rounds, args.clients))


# --- parser -------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="florist-grpc", description="Federated-learning control plane over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the control plane")
    add_serve_arguments(serve, env)
    serve.set_defaults(func=cmd_serve)

    agent = sub.add_parser("agent", help="run a site's agent: dials the control plane, runs FL clients here")
    add_agent_arguments(agent, env)
    agent.set_defaults(func=cmd_agent)

    demo = sub.add_parser("demo", help="serve, train a 2-client FedAvg job on synthetic data, show progress")
    demo.add_argument("--data-dir", default=".florist-demo")
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--clients", type=int, default=2)
    demo.set_defaults(func=cmd_demo)

    data = sub.add_parser("make-data", help="write a dataset partitioned over clients (digits or synthetic)")
    add_make_data_arguments(data)
    data.set_defaults(func=cmd_make_data)

    # Connection flags go on every leaf command so they can follow it: `florist-grpc job get ID --address A`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=env_default(env, "--address", "localhost:50051"))
    common.add_argument("--token", default=env_default(env, "--token", ""))
    common.add_argument("--output", choices=["text", "json"], default="text")

    job = sub.add_parser("job", help="create, list, get or delete jobs")
    job_sub = job.add_subparsers(dest="job_command", required=True)
    job_sub.add_parser("create", parents=[common]).add_argument("--file", required=True)
    listing = job_sub.add_parser("list", parents=[common])
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    listing.add_argument("--state", default="", help="e.g. in_progress")
    job_sub.add_parser("get", parents=[common]).add_argument("job_id")
    job_sub.add_parser("delete", parents=[common]).add_argument("job_id")
    job.set_defaults(func=cmd_job)

    train = sub.add_parser("train", help="start, stop or watch training")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    for name in ("start", "stop", "watch"):
        train_sub.add_parser(name, parents=[common]).add_argument("job_id")
    train.set_defaults(func=cmd_train)

    logs = sub.add_parser("logs", parents=[common], help="print the FL server's or a client's log")
    logs.add_argument("job_id")
    logs.add_argument("--client", type=int, default=None)
    logs.add_argument("--offset", type=int, default=0)
    logs.add_argument("--follow", action="store_true")
    logs.set_defaults(func=cmd_logs)
    add_model_command(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(
        level=os.environ.get("FLORIST_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except grpc.RpcError as exc:
        print(f"error: {describe_rpc_error(exc)}", file=sys.stderr)
        code = 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
