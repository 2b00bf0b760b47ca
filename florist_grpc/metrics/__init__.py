"""From a report in Redis to every subscriber: reporter protocol, listener, ingest, event hub."""
