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
import os
import ssl
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

from filters.download_reasons import GUARD_PRIVATE, GUARD_SCHEME, GUARD_TOO_LARGE  # noqa: E402
from filters.url_safety import ALLOWED_SCHEMES, is_private_address  # noqa: E402


def _check_peer(conn: http.client.HTTPConnection) -> None:
    address = conn.sock.getpeername()[0]
    if is_private_address(address):
        conn.close()
        raise OSError(f"{GUARD_PRIVATE} ({address})")


class _PublicHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self)


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow_private: bool):
        super().__init__()
        self.connection = http.client.HTTPConnection if allow_private else _PublicHTTPConnection

    def http_open(self, req):
        return self.do_open(self.connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow_private: bool):
        super().__init__(context=ssl.create_default_context())
        self.connection = http.client.HTTPSConnection if allow_private else _PublicHTTPSConnection

    def https_open(self, req):
        return self.do_open(self.connection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = newurl.split(":", 1)[0].lower()
        if scheme not in ALLOWED_SCHEMES:
            raise urllib.error.URLError(f"{GUARD_SCHEME} {scheme!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _SizeCap(urllib.request.BaseHandler):
    handler_order = 1000  # after HTTPErrorProcessor: only successful responses get here

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    def _cap(self, req, response):
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise urllib.error.URLError(f"{GUARD_TOO_LARGE} {self.max_bytes} bytes (declared {declared})")
        read = response.read

        def bounded_read(amt: int | None = None) -> bytes:
            if amt is not None:
                return read(amt)
            data = read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise urllib.error.URLError(f"{GUARD_TOO_LARGE} {self.max_bytes} bytes")
            return data

        response.read = bounded_read
        return response

    http_response = https_response = _cap


def guarded_opener(allow_private: bool, max_bytes: int) -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.UnknownHandler(), _HTTPHandler(allow_private), _HTTPSHandler(allow_private),
                    urllib.request.HTTPDefaultErrorHandler(), _RedirectHandler(),
                    urllib.request.HTTPErrorProcessor(), _SizeCap(max_bytes)):
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
def guarded_img2dataset(allow_private: bool, max_bytes: int) -> Iterator[Any]:
    """img2dataset's `download` function, with GuardedDownloader in place of its Downloader."""
    original = img2dataset_main.Downloader
    GuardedDownloader.guard = {"allow_private": allow_private, "max_bytes": max_bytes}
    img2dataset_main.Downloader = GuardedDownloader
    try:
        yield img2dataset_main.download
    finally:
        img2dataset_main.Downloader = original
