"""A user's side of the multi-host test, run inside the control plane's network namespace (tests/e2e/test_netns.py).

`python -m tests.e2e.netns_driver SPEC_JSON` talks TLS + an admin token to the control plane, checks what it is
asked to and prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from florist_grpc.proto.florist.v1 import agent_service_pb2 as agent_pb
from florist_grpc.proto.florist.v1 import agent_service_pb2_grpc as agent_grpc
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from florist_grpc.proto.florist.v1 import training_service_pb2 as pb
from florist_grpc.proto.florist.v1 import training_service_pb2_grpc as training_grpc
from tests.helpers import job_message


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    credentials = grpc.ssl_channel_credentials(Path(spec["ca"]).read_bytes())
    metadata = (("authorization", f"Bearer {spec['token']}"),)
    out: dict[str, Any] = {}
    with grpc.secure_channel(spec["address"], credentials) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        training = training_grpc.TrainingServiceStub(channel)
        listed = agent_grpc.AgentServiceStub(channel).ListAgents(
            agent_pb.ListAgentsRequest(), metadata=metadata, timeout=10
        )
        out["agents"] = {a.name: list(a.devices) for a in listed.agents if a.connected}

        def create(clients: list[tuple[str, str]], rounds: int = 2) -> job_pb2.Job:
            message = job_message([path for _, path in clients], rounds=rounds)
            for client, (agent, _) in zip(message.clients, clients, strict=True):
                client.agent = agent
            request = job_service_pb2.CreateJobRequest(job=message)
            return jobs.CreateJob(request, metadata=metadata, timeout=10).job

        for label, clients in spec["refused"].items():
            job = create([tuple(c) for c in clients])
            try:
                training.StartTraining(pb.StartTrainingRequest(job_id=job.id), metadata=metadata, timeout=60)
                out[label] = {"code": "OK"}
            except grpc.RpcError as exc:
                state = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), metadata=metadata, timeout=10)
                out[label] = {
                    "code": exc.code().name,
                    "details": exc.details(),
                    "state": job_pb2.JobState.Name(state.job.state),
                }

        job = create([tuple(c) for c in spec["clients"]])
        # Every address anything in this namespace listens on while the job runs (its FL server's included).
        listening: set[str] = set()
        done_watching = threading.Event()

        def look() -> None:
            lines = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=False).stdout
            listening.update(line.split()[3] for line in lines.splitlines() if line.strip())

        def watch_listeners() -> None:
            while not done_watching.wait(0.1):
                look()

        watcher = threading.Thread(target=watch_listeners, daemon=True)
        watcher.start()
        training.StartTraining(pb.StartTrainingRequest(job_id=job.id), metadata=metadata, timeout=60)
        stream = training.StreamMetrics(pb.StreamMetricsRequest(job_id=job.id), metadata=metadata, timeout=240)
        events = []
        looked_mid_round = False
        for response in stream:
            events.append(response.event)
            # A short job's FL server can listen for under a second, less than one poll on a loaded machine: look
            # once more, in step with the job, when the server reports its first round (it is listening then).
            server_event = response.event.source.kind == pb.SOURCE_KIND_SERVER
            if server_event and not looked_mid_round and "rounds" in response.event.patch:
                looked_mid_round = True
                look()
        done_watching.set()
        watcher.join(10)
        out["listening"] = sorted(listening)
        out["looked_mid_round"] = looked_mid_round
        done = jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.id), metadata=metadata, timeout=10).job
        out["final_state"] = job_pb2.JobState.Name(done.state)
        out["error_message"] = done.error_message
        out["server_address"] = done.server_address
        out["contiguous"] = [e.sequence for e in events] == list(range(1, len(events) + 1))
        out["clients"] = [
            {
                "state": job_pb2.ClientState.Name(c.state),
                "report": json_format.MessageToDict(c.metrics),
            }
            for c in done.clients
        ]
        out["logs"] = [
            "".join(
                chunk.text
                for chunk in training.StreamLogs(
                    pb.StreamLogsRequest(job_id=job.id, source=pb.LogSource(client_index=i)),
                    metadata=metadata,
                    timeout=30,
                )
            )
            for i in range(len(done.clients))
        ]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
