"""`python -m sheets.wi` refuses what it cannot use with one line and exit 2, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sheets.wi import bad_address


def wi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sheets.wi", *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000", ":0"])
def test_a_bad_address_is_refused_naming_it(address):
    done = wi("--at", address)
    assert done.returncode == 2
    assert f"hallelujah wi: --at {address!r}: expected HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.count("wi_refused") == 1


def test_without_a_terminal_it_says_so():
    done = wi("--at", "127.0.0.1:7077")
    assert done.returncode == 2 and "hallelujah wi: needs a terminal" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_good_addresses_pass():
    assert bad_address("127.0.0.1:7077") is None and bad_address("/run/hallelujah.sock") is None
    assert bad_address("localhost:1") is None
