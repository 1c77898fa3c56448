"""URL safety before fetching, img2dataset messages -> reasons, and the guarded opener."""

from __future__ import annotations

import urllib.error

import pytest

from filters.download_reasons import download_reason
from filters.url_safety import url_problem
from pipelines.io.download_guard import guarded_opener
from tests.image_server import ImageServer


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", "url_scheme_not_allowed"),
        ("file:///etc/passwd", "url_scheme_not_allowed"),
        ("data:image/png;base64,iVBORw0KGgo=", "url_scheme_not_allowed"),
        ("javascript:alert(1)", "url_scheme_not_allowed"),
        ("//example.com/a.jpg", "url_scheme_not_allowed"),
        ("", "url_empty"),
        (None, "url_empty"),
        ("http://[bad/", "url_malformed"),
        ("http://exa mple.com/", "url_malformed"),
        ("http:///no-host", "url_malformed"),
        ("http://example.com:99999/", "url_malformed"),
        ("http://127.0.0.1/a.jpg", "url_private_address"),
        ("http://localhost:8080/a.jpg", "url_private_address"),
        ("http://api.localhost/a.jpg", "url_private_address"),
        ("http://10.0.0.8/a.jpg", "url_private_address"),
        ("http://192.168.1.1/a.jpg", "url_private_address"),
        ("http://172.16.5.4/a.jpg", "url_private_address"),
        ("http://169.254.169.254/latest/meta-data", "url_private_address"),  # cloud metadata service
        ("http://[::1]/a.jpg", "url_private_address"),
        ("http://[fe80::1]/a.jpg", "url_private_address"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "url_private_address"),
        ("http://2130706433/a.jpg", "url_private_address"),  # 127.0.0.1 in decimal
        ("http://0x7f.1/a.jpg", "url_private_address"),  # 127.0.0.1 in hex shorthand
        ("http://0.0.0.0/a.jpg", "url_private_address"),
        ("http://user:secret@example.com/a.jpg", "url_has_credentials"),
        ("http://ex\u00e4mple..com/a.jpg", "url_malformed"),  # not a valid international domain name
    ],
)
def test_refused_urls(url, reason):
    assert url_problem(url)[0] == reason


@pytest.mark.parametrize("url", ["http://example.com/a.jpg", "https://93.184.216.34/x.png?size=2",
                                 "HTTPS://Example.com/A.JPG", "http://[2606:4700::1111]/a.jpg",
                                 "http://bücher.example/straße.jpg?q=é"])
def test_public_urls_pass(url):
    assert url_problem(url) is None


def test_international_urls_are_sent_as_browsers_send_them_and_credentials_never_shown():
    from filters.url_safety import redact_credentials, request_url

    assert request_url("http://bücher.example/straße.jpg?q=é") == \
        "http://xn--bcher-kva.example/stra%C3%9Fe.jpg?q=%C3%A9"
    assert request_url("http://example.com/a.jpg?x=1") == "http://example.com/a.jpg?x=1"
    assert redact_credentials("http://user:secret@example.com:8080/a.jpg") == "http://<redacted>@example.com:8080/a.jpg"
    assert redact_credentials("http://example.com/@a.jpg") == "http://example.com/@a.jpg"
    assert redact_credentials("http://user:secret@[bad/a.jpg") == "http://<redacted>@[bad/a.jpg"  # unparseable
    assert request_url("http://[2606:4700::1111]/\u00e9.jpg") == "http://[2606:4700::1111]/%C3%A9.jpg"
    assert request_url("http://stra\u00dfe.example/") == "http://xn--strae-oqa.example/"  # as browsers: not strasse


def test_allow_private_networks_keeps_the_scheme_rules_and_never_reaches_cloud_metadata():
    assert url_problem("http://127.0.0.1/a.jpg", allow_private_networks=True) is None
    assert url_problem("file:///etc/passwd", allow_private_networks=True)[0] == "url_scheme_not_allowed"
    # the flag is for a loopback server; link-local is where clouds serve instance credentials
    for url in ("http://169.254.169.254/latest/meta-data", "http://2852039166/", "http://[fe80::1]/",
                "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/", "http://[fd20:ce::254]/",
                "http://100.100.100.200/latest/meta-data"):
        reason, detail = url_problem(url, allow_private_networks=True)
        assert reason == "url_private_address" and "never fetched" in detail, url


def test_a_redirect_to_link_local_is_refused_at_connect_time_even_with_the_flag():
    """Checked on the peer address of the open socket (a name or a redirect can lead there). A stub
    socket stands in for the peer: tests never connect outside loopback."""
    from pipelines.io.download_guard import _check_peer

    class Socket:
        def __init__(self, address):
            self.address = address

        def getpeername(self):
            return self.address, 80

    class Connection:
        allow_private, closed = True, False

        def __init__(self, address):
            self.sock = Socket(address)

        def close(self):
            self.closed = True

    for address in ("169.254.169.254", "fe80::1"):
        connection = Connection(address)
        with pytest.raises(OSError, match="vlcurate refused a private network address"):
            _check_peer(connection)
        assert connection.closed
    _check_peer(Connection("127.0.0.1"))  # loopback passes with the flag


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        ("failed_to_download", "HTTP Error 404: Not Found", "http_404"),
        ("failed_to_download", "HTTP Error 503: Service Unavailable", "http_503"),
        ("failed_to_download", "timed out", "timeout"),
        ("failed_to_download", "<urlopen error timed out>", "timeout"),
        ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "connection_refused"),
        ("failed_to_download", "<urlopen error [Errno -2] Name or service not known>", "dns_failure"),
        ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "robots_opt_out"),
        ("failed_to_download", "<urlopen error vlcurate refused a private network address (10.0.0.1)>",
         "private_address"),
        ("failed_to_resize", "Image decoding error", "not_an_image"),
        ("failed_to_resize", "image too small", "image_too_small"),
        ("failed_to_resize", "aspect ratio too large", "aspect_ratio_too_large"),
        ("failed_to_resize", "something cv2 said", "image_unreadable"),
        ("failed_to_download", "something new", "download_failed"),
    ],
)
def test_download_reasons(status, message, reason):
    assert download_reason(status, message) == reason


def test_guarded_opener_refuses_a_private_peer_before_any_request():
    with ImageServer() as server:
        with pytest.raises(OSError, match="vlcurate refused a private network address"):
            guarded_opener(allow_private=False, max_bytes=1 << 20).open(f"{server.base}/img/1.jpg", timeout=5)
        assert server.requests == []  # connected, refused, nothing sent
        body = guarded_opener(allow_private=True, max_bytes=1 << 20).open(f"{server.base}/img/1.jpg", timeout=5).read()
        assert body[:3] == b"\xff\xd8\xff" and server.requests == ["/img/1.jpg"]


def test_guarded_opener_has_no_file_or_ftp_handlers():
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x"):
        with pytest.raises(urllib.error.URLError, match="unknown url type"):
            guarded_opener(allow_private=True, max_bytes=1 << 20).open(url, timeout=5)


def test_a_dripping_server_is_cut_off_at_the_whole_request_deadline():
    import time
    import urllib.error

    from filters.download_reasons import GUARD_DEADLINE

    with ImageServer() as server:
        opener = guarded_opener(allow_private=True, max_bytes=1 << 20, deadline=1.5)
        started = time.perf_counter()
        with pytest.raises(urllib.error.URLError, match=GUARD_DEADLINE):
            opener.open(f"{server.base}/drip.jpg", timeout=1).read()  # each byte comes within the timeout
        assert time.perf_counter() - started < 4
        assert len(opener.open(f"{server.base}/img/3.jpg", timeout=5).read()) > 1000  # the next request is unaffected


def test_a_pixel_bomb_is_refused_from_its_header():
    import urllib.error

    from filters.download_reasons import GUARD_PIXELS

    with ImageServer() as server:
        opener = guarded_opener(allow_private=True, max_bytes=1 << 20, max_pixels=89_478_485)
        with pytest.raises(urllib.error.URLError, match=GUARD_PIXELS):
            opener.open(f"{server.base}/bomb.png", timeout=5).read()
