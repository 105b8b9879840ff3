"""relay/logs.py: one JSON object per line with the log context, request ids taken from
metadata only when they are plain tokens, ID-shaped tokens masked, the context scoped to a
block or task, and the text format for humans. (The end-to-end path, gRPC metadata to the
engine's log lines, is in test_ops_scrape.py.)"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.logs import (
    REDACTED,
    REQUEST_ID_KEY,
    ContextFilter,
    JsonFormatter,
    bind,
    chain_var,
    configure_logging,
    log_context,
    redact,
    request_id_from,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_every_field_and_the_extras(capture: io.StringIO) -> None:
    log = logging.getLogger("relay.engine.test")
    with log_context(request_id="req-1", chain="cn-a", method="QueryService/GetState"):
        log.info("multi\nline %s", "message", extra={"case": "(2026)京0105执1号", "n": 3})
    log.warning("outside")
    first, second = lines(capture)
    assert first["message"] == "multi\nline message"
    assert (first["level"], first["logger"]) == ("INFO", "relay.engine.test")
    assert (first["request_id"], first["chain"], first["method"]) == (
        "req-1",
        "cn-a",
        "QueryService/GetState",
    )
    assert (first["case"], first["n"]) == ("(2026)京0105执1号", 3)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(first["time"]))
    # The context was reset when the block ended.
    assert (second["request_id"], second["chain"], second["method"]) == (None, None, None)
    assert len(capture.getvalue().splitlines()) == 2  # the newline stayed inside the JSON


def test_exceptions_are_one_field(capture: io.StringIO) -> None:
    try:
        raise RuntimeError("boom 110101199003074514")
    except RuntimeError:
        logging.getLogger("relay").exception("failed")
    (line,) = lines(capture)
    assert "RuntimeError: boom" in str(line["exception"])
    assert "110101199003074514" not in str(line["exception"])


def test_an_explicit_extra_beats_the_context(capture: io.StringIO) -> None:
    with log_context(chain="cn-a"):
        logging.getLogger("relay").info("x", extra={"chain": "cn-b"})
    assert lines(capture)[0]["chain"] == "cn-b"


@pytest.mark.parametrize(
    "text",
    [
        "110101199003074514",  # resident ID
        "11010119900307451X",
        "91110000600037341L",  # unified social credit code
    ],
)
def test_id_shaped_tokens_are_masked(text: str) -> None:
    assert redact(f"party {text} asked") == f"party {REDACTED} asked"
    assert redact(f"height 12345 hash {'ab' * 32}") == f"height 12345 hash {'ab' * 32}"


def test_request_id_comes_from_metadata_when_plain() -> None:
    assert request_id_from(((REQUEST_ID_KEY, "court-7f3a"), ("other", "x"))) == "court-7f3a"
    for odd in ("", "a\nb", '{"x":1}', "x" * 129, " lead", "é"):
        assert HEX32.fullmatch(request_id_from(((REQUEST_ID_KEY, odd),))), odd
    assert HEX32.fullmatch(request_id_from(None))
    assert request_id_from(()) != request_id_from(())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_caller_text_gives_a_bounded_plain_id(text: str) -> None:
    rid = request_id_from(((REQUEST_ID_KEY, text),))
    assert 1 <= len(rid) <= 128
    assert re.fullmatch(r"[A-Za-z0-9._:/+=-]+", rid)
    assert rid == text or HEX32.fullmatch(rid)


def test_tasks_keep_their_own_context(capture: io.StringIO) -> None:
    log = logging.getLogger("relay.engine.sync")

    async def sync_task(chain: str) -> None:
        bind(chain=chain)
        await asyncio.sleep(0)
        log.info("round")

    async def main() -> None:
        bind(request_id="req-9", method="AdminService/RegisterChain")
        await asyncio.gather(*(asyncio.create_task(sync_task(c)) for c in ("cn-a", "cn-b")))
        log.info("caller")
        assert chain_var.get() is None

    asyncio.run(main())
    got = {(x["chain"], x["request_id"]) for x in lines(capture) if x["logger"] != "asyncio"}
    assert got == {("cn-a", None), ("cn-b", None), (None, "req-9")}


def test_text_format_and_bad_format() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(level="info", fmt="text", stream=stream)
        with log_context(request_id="r-1", chain="cn-a"):
            logging.getLogger("relay.x").info("hello 110101199003074514")
        text = stream.getvalue()
        assert "INFO relay.x [request_id=r-1 chain=cn-a]: hello " + REDACTED in text
        assert root.level == logging.INFO
        with pytest.raises(ValueError, match="json, text"):
            configure_logging(fmt="xml")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_the_filter_fills_the_context_into_records() -> None:
    record = logging.LogRecord("relay", logging.INFO, __file__, 1, "m", None, None)
    with log_context(request_id="r-2"):
        assert ContextFilter().filter(record)
    assert record.request_id == "r-2"  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(record))["request_id"] == "r-2"
