"""Generated from protos/; do not edit (tools/genproto.py)."""
