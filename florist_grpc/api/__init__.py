"""Thin gRPC servicers: proto <-> domain (convert.py), domain errors -> status codes (errors.py)."""
