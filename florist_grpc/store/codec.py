"""Job <-> plain JSON document, shared by the backends. Reports and state live outside the document."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from florist_grpc.domain.model import (
    Client,
    ClientState,
    Job,
    JobState,
    JsonObject,
    MetricsEvent,
    ProcessRef,
    Source,
    SourceKind,
)
from florist_grpc.domain.projects import DEFAULT_PROJECT
from florist_grpc.domain.resources import Resources
from florist_grpc.domain.tracking import TrackingConfig


def to_micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def job_to_doc(job: Job) -> JsonObject:
    """The job's definition and launch details; state, reports and times are stored beside it."""
    return {
        "model": job.model,
        "strategy": job.strategy,
        "optimizer": job.optimizer,
        "client_type": job.client_type,
        "server_config": job.server_config,
        "model_config": job.model_config,
        "server_address": job.server_address,
        "server_address_auto": job.server_address_auto,
        "redis_address": job.redis_address,
        "server_uuid": job.server_uuid,
        "server_process": asdict(job.server_process),
        "error_message": job.error_message,
        "project": job.project,
        "owner": job.owner,
        "priority": job.priority,
        "tracking": {"experiment": job.tracking.experiment, "tags": job.tracking.tags},
        "resources": asdict(job.resources),
        "clients": [
            {
                "data_path": c.data_path,
                "agent": c.agent,
                "device": c.device,
                "redis_address": c.redis_address,
                "uuid": c.uuid,
                "state": int(c.state),
                "error_message": c.error_message,
                "process": asdict(c.process),
                "label_column": c.label_column,
                "stop_unconfirmed": c.stop_unconfirmed,
            }
            for c in job.clients
        ],
    }


def job_from_doc(
    job_id: str,
    doc: JsonObject,
    *,
    state: int,
    last_sequence: int,
    create_us: int,
    start_us: int | None,
    end_us: int | None,
    reports: dict[str, JsonObject],
    revision: int = 0,
    current_round: int = 0,
    queue_us: int | None = None,
) -> Job:
    clients = [
        Client(
            data_path=c["data_path"],
            # Documents written before agents dialled out have neither key.
            agent=c.get("agent", ""),
            device=c.get("device", "auto"),
            redis_address=c["redis_address"],
            uuid=c["uuid"],
            state=ClientState(c["state"]),
            error_message=c["error_message"],
            metrics=reports.get(f"client{i}", {}),
            process=ProcessRef(**c["process"]),
            label_column=c.get("label_column", ""),
            stop_unconfirmed=c.get("stop_unconfirmed", False),
        )
        for i, c in enumerate(doc["clients"])
    ]
    return Job(
        id=job_id,
        model=doc["model"],
        strategy=doc["strategy"],
        optimizer=doc["optimizer"],
        client_type=doc["client_type"],
        server_config=doc["server_config"],
        model_config=doc.get("model_config", {}),
        clients=clients,
        create_time=from_micros(create_us),
        state=JobState(state),
        server_address=doc["server_address"],
        server_address_auto=doc["server_address_auto"],
        redis_address=doc["redis_address"],
        server_uuid=doc["server_uuid"],
        server_metrics=reports.get("server", {}),
        error_message=doc["error_message"],
        start_time=from_micros(start_us) if start_us is not None else None,
        end_time=from_micros(end_us) if end_us is not None else None,
        server_process=ProcessRef(**doc["server_process"]),
        last_sequence=last_sequence,
        # Jobs stored before tracking settings existed take the control plane's defaults.
        tracking=TrackingConfig(**doc.get("tracking", {})),
        resources=Resources(**doc.get("resources", {})),  # none stored before resources existed
        # Jobs stored before projects belong to the default project, created by nobody we know.
        project=doc.get("project", DEFAULT_PROJECT),
        owner=doc.get("owner", ""),
        revision=revision,
        current_round=current_round,
        priority=doc.get("priority", 0),
        queue_time=from_micros(queue_us) if queue_us is not None else None,
    )


def snapshot_to_doc(job: Job) -> JsonObject:
    """The job as a change of the changes log holds it: its definition and state, without its reports."""
    return {
        **job_to_doc(job),
        "state": int(job.state),
        "create_us": to_micros(job.create_time),
        "start_us": to_micros(job.start_time) if job.start_time else None,
        "end_us": to_micros(job.end_time) if job.end_time else None,
        "last_sequence": job.last_sequence,
        "revision": job.revision,
        "current_round": job.current_round,
        "queue_us": to_micros(job.queue_time) if job.queue_time else None,
    }


def snapshot_from_doc(job_id: str, doc: JsonObject) -> Job:
    return job_from_doc(
        job_id,
        doc,
        state=doc["state"],
        last_sequence=doc["last_sequence"],
        create_us=doc["create_us"],
        start_us=doc["start_us"],
        end_us=doc["end_us"],
        reports={},
        revision=doc["revision"],
        current_round=doc["current_round"],
        queue_us=doc.get("queue_us"),
    )


def event_from_row(
    job_id: str, sequence: int, time_us: int, kind: int, index: int, uuid: str, patch: JsonObject, job_state: int
) -> MetricsEvent:
    return MetricsEvent(
        job_id=job_id,
        sequence=sequence,
        time=from_micros(time_us),
        source=Source(SourceKind(kind), index, uuid),
        patch=patch,
        job_state=JobState(job_state),
    )
