"""How uvicorn serves the app: a header size limit and an access log without link tokens.

* `LimitedHttpToolsProtocol`: uvicorn's httptools protocol with a limit on the request line
  and headers (`PULSE_MAX_HEADER_BYTES`, 64 KiB): httptools itself has none and gathers a
  header value by concatenation, so a 200 MB header was read whole and stalled the worker.
  Bytes are counted as they arrive while the headers are incomplete (so the limit holds
  whatever the size of each read, give or take one read) and the URL and every header as
  parsed; over the limit the client gets 431 and the connection is closed. Under h11 (no
  httptools) `pulse serve` sets `h11_max_incomplete_event_size` to the same limit.
* `RedactTokens`: a logging filter for `uvicorn.access` that replaces the token of
  `/s/...`, `/u/...` and the value of a `t=` query parameter with `***`: a link token is a
  capability (it rates a survey, unsubscribes, opens an account page), and logs are read by
  more people, kept longer and shipped further than links should be.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from pulse.core.settings import get_settings

REDACTED = "***"
_PATH_TOKEN = re.compile(r"(/[su]/)[^/?#\s]+")
_QUERY_TOKEN = re.compile(r"([?&;]t=)[^&#;\s]*")


def redact(target: str) -> str:
    """`target` (a path with its query) with link tokens replaced by `***`."""
    path, sep, query = target.partition("?")
    path = _PATH_TOKEN.sub(lambda m: m.group(1) + REDACTED, path)
    if sep:
        query = _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, "?" + query)[1:]
    return path + sep + query


class RedactTokens(logging.Filter):
    """Redact link tokens from uvicorn's access log records (their args are client,
    method, path with query, HTTP version, status) and from any other message text."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        elif isinstance(record.msg, str) and not args:
            record.msg = redact(record.msg)
        return True


def install_access_log_filter() -> None:
    """Add `RedactTokens` to the `uvicorn.access` logger once (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: `pulse serve` uses h11 and its own limit
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


if HttpToolsProtocol is not None:

    class LimitedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol, with 431 for headers over the limit."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.max_header_bytes = get_settings().max_header_bytes
            self._raw = 0  # bytes received while this request's headers are incomplete
            self._parsed = 0  # bytes of its URL and headers parsed so far
            self._in_headers = True
            self._too_large = False

        def _refuse_if_over(self, n: int) -> None:
            if n > self.max_header_bytes:
                self._too_large = True
                raise ValueError("request headers too large")  # stops the parser: 431

        def data_received(self, data: bytes) -> None:
            if self._too_large:
                return
            if self._in_headers:
                self._raw += len(data)
            super().data_received(data)
            if self._in_headers and not self._too_large and self._raw > self.max_header_bytes:
                self._too_large = True
                self.send_400_response("request headers too large")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers, self._parsed = True, 0

        def on_url(self, url: bytes) -> None:
            self._parsed += len(url)
            self._refuse_if_over(self._parsed)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._parsed += len(name) + len(value) + 4
            self._refuse_if_over(self._parsed)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers, self._raw = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_headers = True

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            if self.transport.is_closing():
                return
            body = b"Request headers too large"
            self.logger.warning("refused a request whose headers passed %d bytes",
                                self.max_header_bytes)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body)
            self.transport.close()
