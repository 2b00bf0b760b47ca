"""From a report in Redis to every subscriber: listener, read throttle, ingest, event hub, stream splice, and the
embedded Redis itself."""
