"""Every mapping between florist.v1 messages and domain objects lives here."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from florist_grpc.domain import catalog
from florist_grpc.domain.errors import FieldViolation, InvalidArgument
from florist_grpc.domain.model import (
    Client,
    ClientLogByIndex,
    ClientLogByUuid,
    ClientState,
    Job,
    JobChange,
    JobState,
    JsonObject,
    LogSource,
    MetricsEvent,
    ServerLog,
)
from florist_grpc.domain.portable_json import whole_numbers
from florist_grpc.domain.resources import Resources
from florist_grpc.domain.tracking import TrackingConfig
from florist_grpc.jobs.artifacts import ModelFile
from florist_grpc.proto.florist.v1 import catalog_service_pb2 as catalog_pb
from florist_grpc.proto.florist.v1 import job_pb2, job_service_pb2
from florist_grpc.proto.florist.v1 import training_service_pb2 as training_pb
from florist_grpc.store.base import PageCursor
from florist_grpc.store.codec import from_micros, to_micros


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None if kind in (None, "null_value") else getattr(value, kind)


def struct_to_dict(struct: struct_pb2.Struct) -> JsonObject:
    # Not json_format.MessageToDict: it raises on NaN/Infinity, which validation reports as a bad field instead.
    return {key: _value(value) for key, value in struct.fields.items()}


def dict_to_struct(value: JsonObject) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def timestamp(t: datetime | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(t)
    return ts


def job_from_proto(pb: job_pb2.Job, job_id: str, now: datetime) -> Job:
    """The user-settable fields of a Job message (output-only fields are ignored)."""
    return Job(
        id=job_id,
        model=pb.model.strip(),
        strategy=pb.strategy.strip(),
        optimizer=pb.optimizer.strip(),
        client_type=pb.client_type.strip(),
        server_config=whole_numbers(struct_to_dict(pb.server_config)),
        model_config=whole_numbers(struct_to_dict(pb.model_config)),
        clients=[
            Client(
                data_path=c.data_path,
                agent=c.agent.strip(),
                device=c.device.strip() or "auto",
                redis_address=c.redis_address.strip(),
                label_column=c.label_column.strip(),
            )
            for c in pb.clients
        ],
        create_time=now,
        server_address=pb.server_address.strip(),
        redis_address=pb.redis_address.strip(),
        project=pb.project.strip(),
        priority=pb.priority,
        tracking=TrackingConfig(pb.tracking.experiment.strip(), dict(pb.tracking.tags)),
        resources=Resources(
            cpus=pb.resources.cpus,
            memory_mib=pb.resources.memory_mib,
            gpus=pb.resources.gpus,
            # A fraction of a second rounds up (a limit is never shorter than asked); negative stays negative.
            time_limit_seconds=pb.resources.time_limit.seconds + (1 if pb.resources.time_limit.nanos > 0 else 0),
        ),
    )


def job_to_proto(job: Job) -> job_pb2.Job:
    pb = job_pb2.Job(
        id=job.id,
        state=job_pb2.JobState.ValueType(int(job.state)),
        model=job.model,
        strategy=job.strategy,
        optimizer=job.optimizer,
        client_type=job.client_type,
        server_address=job.server_address,
        redis_address=job.redis_address,
        server_config=dict_to_struct(job.server_config),
        model_config=dict_to_struct(job.model_config),
        server_uuid=job.server_uuid,
        server_metrics=dict_to_struct(job.server_metrics),
        error_message=job.error_message,
        create_time=timestamp(job.create_time),
        start_time=timestamp(job.start_time),
        end_time=timestamp(job.end_time),
        project=job.project,
        owner=job.owner,
        revision=job.revision,
        current_round=job.current_round,
        priority=job.priority,
        queue_time=timestamp(job.queue_time),
        tracking=job_pb2.TrackingConfig(experiment=job.tracking.experiment, tags=job.tracking.tags),
    )
    if job.resources.requested:
        pb.resources.cpus = job.resources.cpus
        pb.resources.memory_mib = job.resources.memory_mib
        pb.resources.gpus = job.resources.gpus
        pb.resources.time_limit.seconds = job.resources.time_limit_seconds
    for c in job.clients:
        pb.clients.append(
            job_pb2.ClientInfo(
                agent=c.agent,
                device=c.device,
                data_path=c.data_path,
                redis_address=c.redis_address,
                uuid=c.uuid,
                state=job_pb2.ClientState.ValueType(int(c.state)),
                metrics=dict_to_struct(c.metrics),
                error_message=c.error_message,
                label_column=c.label_column,
                stop_confirmed=c.state is ClientState.STOPPED and not c.stop_unconfirmed,
            )
        )
    return pb


def change_to_proto(change: JobChange) -> job_service_pb2.JobChange:
    return job_service_pb2.JobChange(
        revision=change.revision,
        type=job_service_pb2.JobChangeType.ValueType(int(change.type)),
        job=job_to_proto(change.job) if change.job is not None else None,
    )


def event_to_proto(event: MetricsEvent) -> training_pb.MetricsEvent:
    return training_pb.MetricsEvent(
        job_id=event.job_id,
        sequence=event.sequence,
        time=timestamp(event.time),
        source=training_pb.EventSource(
            kind=training_pb.SourceKind.ValueType(int(event.source.kind)),
            client_uuid=event.source.client_uuid,
            client_index=max(event.source.client_index, 0),
        ),
        patch=dict_to_struct(event.patch),
        job_state=job_pb2.JobState.ValueType(int(event.job_state)),
    )


def log_source_from_proto(request: training_pb.StreamLogsRequest) -> LogSource:
    """Whose log a StreamLogs request names (no source: the server's)."""
    source = request.source
    which = source.WhichOneof("source") if request.HasField("source") else None
    if which == "client_index":
        return ClientLogByIndex(source.client_index)
    if which == "client_uuid":
        return ClientLogByUuid(source.client_uuid)
    return ServerLog()


def download_part(part: ModelFile | bytes) -> training_pb.DownloadModelResponse:
    if isinstance(part, bytes):
        return training_pb.DownloadModelResponse(chunk=part)
    return training_pb.DownloadModelResponse(
        artifact=training_pb.ModelArtifact(
            format="safetensors",
            round=part.round,
            size_bytes=part.size_bytes,
            sha256=part.sha256,
            model=part.model,
            model_config=dict_to_struct(part.model_config),
            input_shape=part.input_shape,
            num_classes=part.num_classes,
        )
    )


def catalog_to_proto(models: catalog.Catalog = catalog.DEFAULT_CATALOG) -> catalog_pb.GetCatalogResponse:
    return catalog_pb.GetCatalogResponse(
        models=[
            catalog_pb.ModelInfo(
                name=m.name,
                description=m.description,
                input_shape=list(m.input_shape),
                num_classes=m.num_classes,
                config_schema=dict_to_struct(m.config_schema),
                source=m.source,
            )
            for m in models.models.values()
        ],
        strategies=[
            catalog_pb.StrategyInfo(
                name=s.name,
                description=s.description,
                client_types=list(s.client_types),
                config_schema=dict_to_struct(catalog.config_schema(s.name)),
            )
            for s in catalog.STRATEGIES.values()
        ],
        optimizers=[
            catalog_pb.OptimizerInfo(name=o.name, description=o.description) for o in catalog.OPTIMIZERS.values()
        ],
    )


# --- ListJobs page tokens -------------------------------------------------------------------------------------
# A token is the position after the last job of a page (create time, id) plus the filter it was made for, so a
# page never shifts when newer jobs are added, and a token cannot be replayed against a different filter.


# Our tokens are ~100 characters (a job id is 32) plus the filter; anything far longer was not made here.
MAX_PAGE_TOKEN_CHARS = 4096


def encode_page_token(job: Job, state: JobState, filter_text: str = "") -> str:
    # Integer microseconds, exactly as stored: a float could round across the page boundary.
    body: dict[str, object] = {"t": to_micros(job.create_time), "id": job.id, "s": int(state)}
    if filter_text:
        body["f"] = filter_text
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode_page_token(token: str, state: JobState, filter_text: str = "") -> PageCursor | None:
    if not token:
        return None
    try:
        if len(token) > MAX_PAGE_TOKEN_CHARS:
            raise ValueError("too long")
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = PageCursor(from_micros(int(body["t"])), str(body["id"]))
        token_state = int(body["s"])
        token_filter = str(body.get("f", ""))
    # OverflowError/OSError: a time no datetime can hold (t=1e400 is infinite, t=10**30 is past year 9999);
    # RecursionError: JSON nested too deep to parse.
    except (ValueError, KeyError, TypeError, OverflowError, OSError, RecursionError) as exc:
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token returned by ListJobs")], reason="INVALID_PAGE_TOKEN"
        ) from exc
    if token_state != int(state):
        raise InvalidArgument(
            [FieldViolation("page_token", "was issued for a different state filter")], reason="INVALID_PAGE_TOKEN"
        )
    if token_filter != filter_text:
        raise InvalidArgument(
            [FieldViolation("page_token", "was issued for a different filter")], reason="INVALID_PAGE_TOKEN"
        )
    return cursor
