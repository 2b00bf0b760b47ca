"""`florist-grpc demo`: serve on the embedded defaults, train a real FedAvg job through the gRPC API, show it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import grpc

from florist_grpc.api.convert import dict_to_struct
from florist_grpc.config import Settings
from florist_grpc.fl.make_data import write_digits
from florist_grpc.jobs.artifacts import saved_rounds
from florist_grpc.progress import JobProgress, fmt
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from florist_grpc.server import ControlPlane


def say(line: str = "") -> None:
    # One write of the line with its newline, flushed at once: the control plane logs on stderr meanwhile (one
    # write per record), and print() writes the text and its end separately, so a log record landing between the
    # two would be glued to the line when both streams go to one pipe.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_demo(data_dir: Path, rounds: int = 3, n_clients: int = 2) -> int:
    began = time.monotonic()
    plane = ControlPlane(Settings(port=0, data_dir=data_dir))
    await plane.start()
    address = f"127.0.0.1:{plane.port}"
    say(f"florist-grpc listening on {address}")
    try:
        paths = write_digits(data_dir.resolve() / "demo-data", n_clients)
        say(f"wrote the 8x8 digits (scikit-learn) for {n_clients} clients: {', '.join(str(p) for p in paths)}")
        async with grpc.aio.insecure_channel(address) as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            training = training_grpc.TrainingServiceStub(channel)
            job = job_pb2.Job(
                model="MLP",
                strategy="FEDAVG",
                optimizer="SGD",
                client_type="FEDAVG",
                server_config=dict_to_struct(
                    {"n_server_rounds": rounds, "batch_size": 32, "local_epochs": 1, "learning_rate": 0.05}
                ),
                model_config=dict_to_struct({"hidden_sizes": [64], "dropout": 0.0}),
                clients=[job_pb2.ClientInfo(data_path=str(p)) for p in paths],
            )
            created = (await jobs.CreateJob(job_service_pb2.CreateJobRequest(job=job), timeout=30)).job
            what = f"FEDAVG, MLP sized by the data, {rounds} rounds"
            say(f"created job {created.id} ({what}, FL server on {created.server_address})")
            started = await training.StartTraining(training_pb.StartTrainingRequest(job_id=created.id), timeout=60)
            if started.queued:
                say("queued: it starts as soon as it fits")
            else:
                say(f"started: server {started.server_uuid[:8]}, clients {[u[:8] for u in started.client_uuids]}")
            progress = JobProgress.for_job(created)
            stream = training.StreamMetrics(training_pb.StreamMetricsRequest(job_id=created.id), timeout=600)
            async for response in stream:
                for line in progress.apply(response.event):
                    say(f"[{response.event.sequence}] {line}")
        models = plane.trainer.model_dir(created.id)
    finally:
        await plane.stop()
    # The summary comes once the control plane has stopped, so that no log line of its shutdown follows it.
    say()
    say("round  val loss  val accuracy  train loss")
    for row in progress.rounds_table():
        say(f"{row.number:>5}  {fmt(row.loss):>8}  {fmt(row.accuracy):>12}  {fmt(row.train_loss):>10}")
    final = job_pb2.JobState.Name(job_pb2.JobState.ValueType(progress.state))
    say(f"final state: {final} in {time.monotonic() - began:.1f} s")
    # The demo's server has stopped: point at the file, and at how to serve it again for a download.
    if rounds_saved := saved_rounds(models):
        say(f"the trained model: {models / f'round-{rounds_saved[-1]}.safetensors'}")
        say(
            f"  or, with `florist-grpc serve --data-dir {data_dir}` running: "
            f"florist-grpc model download {created.id} --out model.safetensors"
        )
    return 0 if progress.succeeded else 1
