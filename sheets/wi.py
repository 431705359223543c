"""The Window Interface (`hallelujah wi`): a terminal view of congregations through the client library."""
from __future__ import annotations

import sys


def main(addresses: list[str], read_only: bool = False) -> int:
    """Run the Window Interface against `addresses` until the user quits; returns the exit code."""
    print("hallelujah wi: the Window Interface is being built", file=sys.stderr)
    return 1
