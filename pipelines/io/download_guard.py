"""What img2dataset's workers may fetch, enforced where the connection is made.

img2dataset fetches with `urllib.request.urlopen`, which uses the opener installed in its process.
Each worker installs ours before its shard: only http/https handlers (no file:, ftp:, data:), the
address actually connected to must be public (this covers host names that resolve to private
addresses and redirects that lead there), redirects may only go to http/https, and a response may
not exceed a byte cap (img2dataset itself reads whole bodies into memory).

img2dataset builds its Downloader inside `download()`, so `guarded_img2dataset` swaps in a subclass
for the duration of the call; the subclass is pickled to the workers with the guard's settings.
"""

from __future__ import annotations

import http.client
import importlib
import logging
import os
import signal
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# albumentations (imported by img2dataset) asks PyPI for updates on import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from img2dataset.downloader import Downloader  # noqa: E402

# The package re-exports its `main` function under the module's name; fetch the module itself.
img2dataset_main = importlib.import_module("img2dataset.main")

from filters.download_reasons import (GUARD_DEADLINE, GUARD_PIXELS, GUARD_PRIVATE, GUARD_SCHEME,  # noqa: E402
                                     GUARD_TOO_LARGE)
from filters.image_checks import ImageHeader, read_header  # noqa: E402
from filters.url_safety import ALLOWED_SCHEMES, is_link_local, is_private_address  # noqa: E402


log = logging.getLogger("vlcurate")
_request = threading.local()  # this thread's request: img2dataset opens and reads in the same thread


def _check_peer(conn: http.client.HTTPConnection) -> None:
    address = conn.sock.getpeername()[0]
    if is_link_local(address) or (not conn.allow_private and is_private_address(address)):
        conn.close()
        raise OSError(f"{GUARD_PRIVATE} ({address})")


def _arm_deadline(conn: http.client.HTTPConnection) -> None:
    """The socket timeout bounds each read, not the request: a server dripping a byte every few
    seconds would hold a worker for hours. A timer shuts the socket down at the deadline. A thread
    makes one request at a time, so it holds one timer: an earlier request's is cancelled first."""
    _disarm()
    if not conn.deadline:
        return
    state = {"expired": False}
    sock = conn.sock

    def expire() -> None:
        state["expired"] = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: the request finished in time

    timer = threading.Timer(conn.deadline, expire)
    timer.daemon = True
    timer.start()
    _request.timer, _request.state = timer, state


def _expired() -> bool:
    return getattr(_request, "state", {}).get("expired", False)


def _disarm() -> None:
    timer = getattr(_request, "timer", None)
    if timer is not None:
        timer.cancel()
    _request.timer, _request.state = None, {}


class _Guarded:
    """Mixed into http.client's connections: check the peer's address, then arm the deadline."""

    allow_private = False  # link-local addresses are refused even then
    deadline: float | None = None

    def connect(self) -> None:
        super().connect()
        _check_peer(self)
        _arm_deadline(self)


def _connection(base: type, allow_private: bool, deadline: float | None) -> type:
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"allow_private": allow_private, "deadline": deadline})


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow_private: bool, deadline: float | None = None):
        super().__init__()
        self.connection = _connection(http.client.HTTPConnection, allow_private, deadline)

    def http_open(self, req):
        return self.do_open(self.connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow_private: bool, deadline: float | None = None):
        super().__init__(context=ssl.create_default_context())
        self.connection = _connection(http.client.HTTPSConnection, allow_private, deadline)

    def https_open(self, req):
        return self.do_open(self.connection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = newurl.split(":", 1)[0].lower()
        if scheme not in ALLOWED_SCHEMES:
            raise urllib.error.URLError(f"{GUARD_SCHEME} {scheme!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _SizeCap(urllib.request.BaseHandler):
    """Bounds what a successful response may cost: its bytes, its declared pixels (checked from the
    header before img2dataset decodes anything), and its time (the deadline armed on connect)."""

    handler_order = 1000  # after HTTPErrorProcessor: only successful responses get here

    def __init__(self, max_bytes: int, max_pixels: int | None):
        self.max_bytes, self.max_pixels = max_bytes, max_pixels

    def _cap(self, req, response):
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise urllib.error.URLError(f"{GUARD_TOO_LARGE} {self.max_bytes} bytes (declared {declared})")
        read, max_bytes, max_pixels = response.read, self.max_bytes, self.max_pixels

        def bounded_read(amt: int | None = None) -> bytes:
            try:
                data = read(amt if amt is not None else max_bytes + 1)
            except Exception:
                if _expired():
                    raise urllib.error.URLError(f"{GUARD_DEADLINE} (timed out)") from None
                raise
            if _expired():
                raise urllib.error.URLError(f"{GUARD_DEADLINE} (timed out)")
            if amt is None:
                _disarm()
                if len(data) > max_bytes:
                    raise urllib.error.URLError(f"{GUARD_TOO_LARGE} {max_bytes} bytes")
                header = read_header(data)
                if max_pixels and isinstance(header, ImageHeader) and header.width * header.height > max_pixels:
                    raise urllib.error.URLError(f"{GUARD_PIXELS} {max_pixels} ({header.width}x{header.height})")
                if not isinstance(header, ImageHeader) and header.reason == "image_too_many_pixels":
                    raise urllib.error.URLError(f"{GUARD_PIXELS} {max_pixels} ({header.detail})")
            return data

        response.read = bounded_read
        return response

    http_response = https_response = _cap


def guarded_opener(allow_private: bool, max_bytes: int, max_pixels: int | None = None,
                   deadline: float | None = None) -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.UnknownHandler(), _HTTPHandler(allow_private, deadline),
                    _HTTPSHandler(allow_private, deadline),
                    urllib.request.HTTPDefaultErrorHandler(), _RedirectHandler(),
                    urllib.request.HTTPErrorProcessor(), _SizeCap(max_bytes, max_pixels)):
        opener.add_handler(handler)
    return opener


class GuardedDownloader(Downloader):
    """img2dataset's Downloader, installing the guarded opener in the worker before each shard."""

    guard: dict[str, Any] = {}  # set by guarded_img2dataset in the parent; copied onto each instance

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard_settings = dict(type(self).guard)  # travels with the pickled instance

    def __call__(self, row):
        urllib.request.install_opener(guarded_opener(**self.guard_settings))
        return super().__call__(row)


@contextmanager
def guarded_img2dataset(allow_private: bool, max_bytes: int, max_pixels: int | None = None,
                        deadline: float | None = None) -> Iterator[Any]:
    """img2dataset's `download` function, with GuardedDownloader in place of its Downloader."""
    original = img2dataset_main.Downloader
    GuardedDownloader.guard = {"allow_private": allow_private, "max_bytes": max_bytes, "max_pixels": max_pixels,
                               "deadline": deadline}
    img2dataset_main.Downloader = GuardedDownloader
    previous = signal.getsignal(signal.SIGINT)

    def download(*args, **kwargs):
        # img2dataset installs a SIGINT handler that calls sys.exit(0) and leaves it installed: Ctrl-C
        # during (or after) a download exited 0, as if it had finished. It is an interrupt.
        try:
            return img2dataset_main.download(*args, **kwargs)
        except FileNotFoundError as err:
            # Its last line removes its _tmp folder; on object stores other than S3 (GCS) an emptied
            # folder no longer exists, and rm raises after every shard is written. Nothing is lost.
            if "_tmp" not in str(err):
                raise
            log.debug("img2dataset's _tmp folder was already gone: %s", err)
            return None
        except SystemExit as exit_:
            if exit_.code in (0, None):
                raise KeyboardInterrupt from None
            raise
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, previous)

    try:
        yield download
    finally:
        img2dataset_main.Downloader = original
