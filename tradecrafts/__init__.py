"""Example tradecraft documents with small sample data, each runnable by `hallelujah run`."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
