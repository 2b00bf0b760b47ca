"""Chooses the store backend from the settings: MongoDB when a URI is given, else SQLite in the data dir."""

from __future__ import annotations

from pathlib import Path

from florist_grpc.store.base import JobStore


def open_store(mongodb_uri: str, data_dir: Path) -> JobStore:
    if mongodb_uri:
        from florist_grpc.store.mongo import MongoStore

        return MongoStore.from_uri(mongodb_uri)
    from florist_grpc.store.sqlite import SqliteStore

    return SqliteStore(data_dir / "florist.sqlite3")
