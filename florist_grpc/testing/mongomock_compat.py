"""mongomock (4.3) as a stand-in for MongoDB where none runs: four gaps closed, nothing more.

- pymongo >= 4.11 hands bulk updates a `sort` argument mongomock's bulk builder does not take (and an update by
  `_id` never needs): dropped.
- MongoDB inserts atomically against unique indexes; mongomock checks `_id` and then writes, so two threads can
  both "insert" one _id: inserts are serialised (reentrant: insert_many inserts through the same method).
- MongoDB refuses a document over 16 MiB (pymongo raises DocumentTooLarge before sending it); mongomock stores
  anything: an insert of a larger document raises DocumentTooLarge, as an ordered insert_many does at that one.
- pymongo encodes every update to BSON before sending it, refusing what BSON cannot hold (an integer beyond 64
  bits: OverflowError); mongomock never encodes: an update is encoded first here, raising what pymongo raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import bson
from pymongo.errors import DocumentTooLarge

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # MongoDB's maxBsonObjectSize

_lock = threading.RLock()
_patched = False


def patch_mongomock() -> None:
    """Apply the fixes to mongomock, once per process."""
    global _patched
    from mongomock.collection import BulkOperationBuilder, Collection

    with _lock:
        if _patched:
            return
        add_update: Callable[..., Any] = BulkOperationBuilder.add_update
        insert: Callable[..., Any] = Collection._insert
        update: Callable[..., Any] = Collection._update

        def add_update_without_sort(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
            return add_update(self, *args, **kwargs)

        def atomic_insert(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(data, Mapping) and len(bson.encode(data)) > MAX_DOCUMENT_BYTES:
                raise DocumentTooLarge(f"BSON document too large: over {MAX_DOCUMENT_BYTES} bytes")
            with _lock:
                return insert(self, data, *args, **kwargs)

        def encoded_update(self: Any, spec: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
            bson.encode({"q": spec, "u": document})
            return update(self, spec, document, *args, **kwargs)

        setattr(BulkOperationBuilder, "add_update", add_update_without_sort)  # noqa: B010 (patching a class)
        setattr(Collection, "_insert", atomic_insert)  # noqa: B010
        setattr(Collection, "_update", encoded_update)  # noqa: B010
        _patched = True
