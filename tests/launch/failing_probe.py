"""A stand-in for `python -m florist_grpc.fl.probe` that fails the way a reader's traceback does: quoting what it
read from a data file on its stderr."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.stderr.write("Traceback (most recent call last):\nValueError: could not convert string to float: 'TOPSECRET'\n")
    sys.exit(3)
