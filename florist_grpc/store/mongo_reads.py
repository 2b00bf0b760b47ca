"""MongoStore's stored documents read back as domain objects: a job row, a job's events."""

from __future__ import annotations

import json

from pymongo.collection import Collection

from florist_grpc.domain.model import Job, JsonObject, MetricsEvent
from florist_grpc.store.codec import event_from_row, job_from_doc
from florist_grpc.store.mongo_keys import map_keys, unescape_key


def job_of(row: JsonObject) -> Job:
    """A job document (with or without its reports) as a Job."""
    reports = {unescape_key(k): map_keys(v, unescape_key) for k, v in row.get("reports", {}).items()}
    return job_from_doc(
        row["_id"],
        row["doc"],
        state=row["state"],
        last_sequence=row["last_sequence"],
        create_us=row["create_us"],
        start_us=row.get("start_us"),
        end_us=row.get("end_us"),
        reports=reports,
        # Documents written before revisions and rounds have neither.
        revision=row.get("revision", 0),
        current_round=row.get("current_round", 0),
        queue_us=row.get("queue_us"),
    )


def read_events(events: Collection[JsonObject], job_id: str, after_sequence: int, limit: int) -> list[MetricsEvent]:
    rows = events.find({"job_id": job_id, "sequence": {"$gt": after_sequence}}).sort("sequence", 1).limit(limit)
    out = []
    for r in rows:
        s = json.loads(r["source"])
        out.append(
            event_from_row(
                job_id,
                r["sequence"],
                r["time_us"],
                s["kind"],
                s["client_index"],
                s["client_uuid"],
                json.loads(r["patch"]),
                r["job_state"],
            )
        )
    return out
