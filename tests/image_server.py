"""A loopback HTTP server for download tests: generated images and every kind of failure.

Binds 127.0.0.1 on a free port, serves from a thread, records each request path, and stops with
the test. Nothing here talks to any other address.
"""

from __future__ import annotations

import io
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from pipelines.drivers.sample_data import png_declaring

SLOW_SECONDS = 3.0  # beyond the tests' 1 s timeout, bounded so the server thread ends
DELAY_SECONDS = 0.0  # per image, set by tests that need a download to take time
DRIP_SECONDS = 0.5  # between the bytes of /drip.jpg: each read well within the 1 s socket timeout
DRIP_BYTES = 20  # bounded, so the server thread ends (10 s) even if nobody cuts it off


def jpeg(i: int, width: int = 320, height: int = 240, noise: bool = False) -> bytes:
    if noise:  # incompressible: the byte size follows the pixel count
        rng = random.Random(i)
        img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        img = Image.new("RGB", (width, height), (i * 37 % 256, i * 91 % 256, 120))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, body: bytes, content_type: str = "image/jpeg", status: int = 200, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        self.server.requests.append(parts.path)
        query = {k: int(v[0]) for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path.startswith("/img/"):
            time.sleep(self.server.delay)
            i = int(path.split("/")[-1].split(".")[0])
            self._send(jpeg(i, query.get("w", 320), query.get("h", 240)))
        elif path == "/missing.jpg":
            self._send(b"not found", "text/plain", status=404)
        elif path == "/slow.jpg":
            time.sleep(SLOW_SECONDS)
            self._send(jpeg(0))
        elif path == "/page.html":
            self._send(b"<html><body>not an image</body></html>", "text/html")
        elif path == "/huge.jpg":
            self._send(jpeg(1, 1200, 1200, noise=True))
        elif path == "/stream.jpg":  # no Content-Length: the size cap must hold while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(jpeg(2, 1200, 1200, noise=True))
            self.close_connection = True
        elif path == "/redirect.jpg":
            self.send_response(302)
            self.send_header("Location", "/img/77.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/ftp-redirect.jpg":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/x.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop.jpg":  # redirects to itself forever
            self.send_response(302)
            self.send_header("Location", "/loop.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/file-redirect.jpg":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/bomb.png":  # a small PNG declaring 30000 x 30000 pixels
            self._send(png_declaring(30_000, 30_000), "image/png")
        elif path == "/drip.jpg":  # a byte at a time, each well within the socket timeout
            body = jpeg(5)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(min(len(body), DRIP_BYTES)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(DRIP_SECONDS)
            except OSError:
                pass  # the client gave up: that is the point
        elif path == "/robots.jpg":
            self._send(jpeg(3), headers=[("X-Robots-Tag", "noai")])
        elif path == "/tiny.jpg":
            self._send(jpeg(4, 40, 30))
        else:
            self._send(b"no such route", "text/plain", status=404)


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[str] = []
        self.delay = DELAY_SECONDS
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        pass  # clients that time out or refuse a body close early; that is the point of those routes

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
