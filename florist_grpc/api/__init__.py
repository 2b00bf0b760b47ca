"""gRPC adapters only: thin servicers, proto <-> domain converters (convert.py), status mapping of servicer
methods (errors.py), auth, and the server builder (grpc_server.py)."""
