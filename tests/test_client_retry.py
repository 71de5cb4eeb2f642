"""What the client reads from a refusal's Retry-After, and how --wait is checked."""

from __future__ import annotations

import pytest

from arx.client.api import MAX_RETRY_AFTER, parse_retry_after
from tests.conftest import arx


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5),
        (" 30 ", 30),
        ("0", 0),
        (str(MAX_RETRY_AFTER), MAX_RETRY_AFTER),
        ("999999", MAX_RETRY_AFTER),  # An untrusted host cannot make the client wait for days.
        (None, None),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # The HTTP-date form is not read.
        ("٣", None),  # A digit, but not an ASCII one.
        ("1" * 11, None),
    ],
)
def test_retry_after(header: str | None, seconds: int | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "86401", "soon"])
def test_wait_must_be_a_sensible_number_of_seconds(value: str) -> None:
    run = arx("deploy", "x.wasm", "--host", "http://127.0.0.1:1", "--backend", "nil",
              "--wait", value)  # fmt: skip
    assert run.returncode == 2
    assert "--wait" in run.stderr.decode()
