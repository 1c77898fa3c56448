"""Fetching one image URL with vlcurate download's guard, for the documents' image nodes.

The same guarded urllib opener as `vlcurate download` (pipelines/io/download_guard.py: http/https
only, public addresses only, checked at connect time and on redirects, a byte cap, a pixel cap
read from the header, a deadline for the whole request) and img2dataset's X-Robots-Tag opt-out
check, used directly instead of installed process-wide (tests and other code in the same process
keep their own opener). Failures come back as the download's reasons (http_404, timeout,
private_address, robots_opt_out, ...), never as exceptions.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from filters.download_reasons import download_reason
from filters.url_safety import request_url, url_problem
from pipelines.io.download_guard import guarded_opener

USER_AGENT = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes | None
    reason: str | None = None
    detail: str = ""
    cached: bool = False  # read from the run's image cache, not fetched again


def robots_disallowed(values: list[str], user_agent_token: str | None, directives: tuple[str, ...]) -> bool:
    """img2dataset's rule: an X-Robots-Tag value, for every agent or for ours, naming a directive."""
    for value in values:
        parts = value.split(":", 1)
        agent, rest = (parts[0].strip().lower(), parts[1]) if len(parts) == 2 else (None, value)
        if agent is None or agent == (user_agent_token or "").lower():
            if any(d.strip().lower() in directives for d in rest.split(",")):
                return True
    return False


class HostPoliteness:
    """At most `connections` requests at a time per host, and `interval` seconds between the starts
    of two requests to one host, within this worker process."""

    def __init__(self, connections: int, interval: float):
        self.interval = interval
        self._slots = defaultdict(lambda: threading.BoundedSemaphore(connections))
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def turn(self, host: str):
        with self._lock:
            slot = self._slots[host]
        with slot:
            if self.interval:
                with self._lock:
                    start = max(time.monotonic(), self._last.get(host, 0.0) + self.interval)
                    self._last[host] = start
                time.sleep(max(0.0, start - time.monotonic()))
            yield


class ImageFetcher:
    def __init__(self, config, politeness: HostPoliteness):
        self.config = config
        self.politeness = politeness
        self.opener = guarded_opener(config.allow_private_networks, config.max_image_bytes, config.max_pixels,
                                     config.deadline)
        token = config.user_agent_token
        self.user_agent = f"{USER_AGENT} (compatible; {token}; +https://github.com/rom1504/img2dataset)" if token \
            else USER_AGENT
        self.directives = tuple(d.lower() for d in config.disallowed_header_directives) \
            if config.honor_robots_tag else ()

    def fetch(self, url: str) -> Fetched:
        problem = url_problem(url, self.config.allow_private_networks)
        if problem is not None:
            return Fetched(None, problem[0], problem[1])
        host = (urlsplit(url).hostname or "").lower()
        try:
            request = urllib.request.Request(request_url(url), headers={"User-Agent": self.user_agent})
        except (UnicodeError, ValueError) as err:
            return Fetched(None, "url_malformed", f"{type(err).__name__}: {err}"[:500])
        try:
            with self.politeness.turn(host), self.opener.open(request, timeout=self.config.timeout) as response:
                if self.directives and robots_disallowed(response.headers.get_all("X-Robots-Tag") or [],
                                                         self.config.user_agent_token, self.directives):
                    return Fetched(None, "robots_opt_out", "X-Robots-Tag opts out")
                return Fetched(response.read())
        except Exception as err:  # urllib, ssl, socket and the guard's errors: each a reason
            return Fetched(None, download_reason(None, str(err)), f"{type(err).__name__}: {err}"[:500])
