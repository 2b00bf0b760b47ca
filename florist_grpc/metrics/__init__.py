"""From a report in Redis to every subscriber: listener, report reader (with its read throttle), ingest, event
publisher, event hub, stream splice, and the embedded Redis itself."""
