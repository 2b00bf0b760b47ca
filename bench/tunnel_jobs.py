"""The user's side of bench/tunnel.py, run inside the control plane's network namespace.

`python -m bench.tunnel_jobs SPEC_JSON`: waits for the agents, then runs the jobs SPEC lists in order (each a
mode and the two agents it runs on), sampling the control plane's memory (RSS and PSS of the `serve` process,
whose pid SPEC gives) every 0.1 s while each runs; prints one JSON object: per job its rounds' durations (from
the FL server's own report: fit start to evaluation end) and the memory samples' summary.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import json_format, struct_pb2

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc

TERMINAL = {job_pb2.JOB_STATE_FINISHED_SUCCESSFULLY, job_pb2.JOB_STATE_FINISHED_WITH_ERROR, job_pb2.JOB_STATE_CANCELLED}


def job(spec: dict[str, Any], agents: list[str]) -> job_pb2.Job:
    config = struct_pb2.Struct()
    config.update({"n_server_rounds": spec["rounds"], "batch_size": 32, "local_epochs": 1})
    model_config = struct_pb2.Struct()
    model_config.update({"hidden_sizes": spec["hidden_sizes"]})
    return job_pb2.Job(
        model="MLP",
        strategy="FEDAVG",
        optimizer="SGD",
        client_type="FEDAVG",
        server_config=config,
        model_config=model_config,
        clients=[job_pb2.ClientInfo(data_path="c.pt", agent=a) for a in agents],
    )


def memory(pid: int) -> tuple[float, float]:
    """RSS and PSS of `pid`, in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.pss / 2**20


def round_seconds(report: dict[str, Any]) -> list[float]:
    rounds = report.get("rounds", {})
    out = []
    for key in sorted(rounds, key=int):
        r = rounds[key]
        start, end = r.get("fit_round_start"), r.get("eval_round_end")
        if start and end:
            out.append((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    return out


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    credentials = grpc.ssl_channel_credentials(Path(spec["ca"]).read_bytes())
    metadata = (("authorization", f"Bearer {spec['token']}"),)
    out: dict[str, Any] = {"jobs": []}
    with grpc.secure_channel(spec["address"], credentials) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        training = training_grpc.TrainingServiceStub(channel)
        listing = agent_grpc.AgentServiceStub(channel)
        deadline = time.monotonic() + 120
        wanted = {a for run in spec["runs"] for a in run["agents"]}
        while True:
            listed = listing.ListAgents(agent_pb.ListAgentsRequest(), metadata=metadata, timeout=10)
            if wanted <= {a.name for a in listed.agents if a.connected}:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"agents not connected: {wanted}")
            time.sleep(0.5)
        for run in spec["runs"]:
            created = jobs.CreateJob(
                job_service_pb2.CreateJobRequest(job=job(spec, run["agents"])), metadata=metadata, timeout=30
            ).job
            began = time.monotonic()
            training.StartTraining(training_pb.StartTrainingRequest(job_id=created.id), metadata=metadata, timeout=120)
            samples = [memory(spec["serve_pid"])]
            while True:
                done = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=created.id), metadata=metadata, timeout=10).job
                if done.state in TERMINAL or time.monotonic() - began > 900:
                    break
                samples.append(memory(spec["serve_pid"]))
                time.sleep(0.1)
            out["jobs"].append(
                {
                    "mode": run["mode"],
                    "state": job_pb2.JobState.Name(done.state),
                    "error": done.error_message,
                    "wall_seconds": round(time.monotonic() - began, 2),
                    "round_seconds": round_seconds(json_format.MessageToDict(done.server_metrics)),
                    "rss_mib": {"start": samples[0][0], "max": max(s[0] for s in samples), "end": samples[-1][0]},
                    "pss_mib": {"start": samples[0][1], "max": max(s[1] for s in samples), "end": samples[-1][1]},
                }
            )
            print(json.dumps(out["jobs"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
