"""florist-grpc: a gRPC control plane for federated-learning training jobs."""

__version__ = "0.1.0"
