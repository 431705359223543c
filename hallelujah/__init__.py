"""Hallelujah: a self-scaling stream-processing database.

    async with hallelujah.open_database(["127.0.0.1:7077"]) as db:
        await db.submit(document)
        await db.publish("gps/positions", table)
        async with db.stream("gps/countries", from_start=True) as batches:
            async for batch in batches: ...
"""
from importlib import metadata as _metadata

from hallelujah.client import Database, open_database
from hallelujah.errors import (ExpressionError, HallelujahError, NotFound, SchemaMismatch,
                               TradecraftError, Unavailable)
from hallelujah.sync import connect

try:
    __version__ = _metadata.version("hallelujah")
except _metadata.PackageNotFoundError:     # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "open_database", "Database", "connect", "HallelujahError", "TradecraftError",
           "ExpressionError", "SchemaMismatch", "NotFound", "Unavailable"]
