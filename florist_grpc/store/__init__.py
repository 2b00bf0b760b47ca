"""Job persistence: the JobStore interface and its backends (SQLite embedded default, MongoDB)."""
