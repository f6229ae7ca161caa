"""One HTTP request that can neither hold a run up nor carry a token elsewhere: the whole
exchange (connection, headers, body) is bounded in time, not each socket read; a redirect is
refused, never followed; only http and https URLs are asked; the answer is capped in size.

urllib (no extra dependency) does the work, so proxies configured in the environment are
used as usual. Used by the Electricity Maps client and by the CodeCarbon drop-in's HTTP
outputs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import NamedTuple
from urllib.error import HTTPError, URLError
from urllib.request import (
    HTTPHandler,
    HTTPRedirectHandler,
    HTTPSHandler,
    Request,
    build_opener,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_BYTES = 1 << 20


class Response(NamedTuple):
    status: int
    reason: str
    body: bytes


class RedirectRefused(URLError):
    """The server answered with a redirect, which is not followed (it would carry the
    request's headers, a token among them, to wherever it points)."""

    def __init__(self, url: str, location: str) -> None:
        super().__init__(f"redirected to {location}; redirects are not followed")
        self.url = url
        self.location = location


class _Sockets:
    """The sockets a request has opened, so that its deadline can cut them off: a thread
    blocked reading a server that trickles its answer then returns at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._cut = False

    def add(self, sock: Any) -> None:
        with self._lock:
            self._open.append(sock)
            if self._cut:
                _shut(sock)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                _shut(sock)


def _shut(sock: Any) -> None:
    # The plain socket's shutdown, also under TLS: it wakes a blocked read without touching
    # the TLS state another thread is using. One already closed raises, and is left.
    with contextlib.suppress(OSError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _tracked(base: Any, sockets: _Sockets) -> Any:
    class Tracked(base):  # type: ignore[misc]
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    return Tracked


class _HTTP(HTTPHandler):
    def __init__(self, sockets: _Sockets) -> None:
        super().__init__()
        self._sockets = sockets

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(_tracked(http_class, self._sockets), req, **kwargs)


class _HTTPS(HTTPSHandler):
    def __init__(self, sockets: _Sockets) -> None:
        super().__init__()
        self._sockets = sockets

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(_tracked(http_class, self._sockets), req, **kwargs)


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise RedirectRefused(req.full_url, newurl)


def request(
    url: str,
    *,
    timeout_s: float,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_BYTES,
) -> Response:
    """The answer to one request, within `timeout_s` in all. An HTTP error status is
    returned like any other. Raises URLError (an OSError): a URL that is not http or https,
    a redirect (RedirectRefused), an answer over `max_bytes`, no complete answer in time,
    or the connection's own failure."""
    from urllib.parse import urlsplit

    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise URLError(f"{url!r} is not an http:// or https:// URL")
    req = Request(url, data=data, headers=headers or {}, method=method)
    sockets = _Sockets()
    result: list[Response | BaseException] = []

    def read(response: Any) -> bytes:
        body: bytes = response.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise URLError(f"an answer of more than {max_bytes} bytes")
        return body

    def run() -> None:
        try:
            opener = build_opener(_NoRedirect, _HTTP(sockets), _HTTPS(sockets))
            try:
                with opener.open(req, timeout=timeout_s) as response:
                    result.append(Response(response.status, response.reason, read(response)))
            except HTTPError as e:
                with e:
                    result.append(Response(e.code, str(e.reason), read(e)))
        except BaseException as e:
            result.append(e)

    worker = threading.Thread(target=run, name="carbonfast-http", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not result:
        sockets.cut()
        raise URLError(f"no complete answer within {timeout_s:g} s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
