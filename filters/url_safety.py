"""Which URLs may be fetched at all: http(s) only, well formed, and not aimed at private networks.

This check runs before any request, on the URL text. Host names that resolve to private
addresses (or redirects that lead there) are caught again at connect time by
pipelines/download_guard.py, which checks the address actually connected to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import quote, urlsplit, urlunsplit

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 4096
_SAFE = "/%:@!$&'()*+,;=-._~?"  # reserved characters and escapes stay as they are
# Names that always mean this machine, whatever DNS says (RFC 6761).
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# Cloud metadata services outside link-local: AWS's and GCP's IPv6 ones (ULA), Alibaba's (shared space)
_METADATA = frozenset(map(ipaddress.ip_address, ("fd00:ec2::254", "fd20:ce::254", "100.100.100.200")))


def is_private_address(address: str) -> bool:
    """Loopback, private (RFC 1918, ULA), link-local, shared, reserved, multicast or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def is_link_local(address: str) -> bool:
    """Link-local addresses and the clouds' metadata services, which hand out instance credentials
    (169.254.169.254, fd00:ec2::254, ...): never fetched, not even with allow_private_networks (meant
    for data on your own network and a loopback server)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip in _METADATA


def _literal_address(host: str) -> str | None:
    """The IP address a host string denotes by itself, legacy IPv4 forms included.

    "127.1", "0x7f.0.0.1" and "2130706433" all reach 127.0.0.1 through the C resolver, so they
    are read with inet_aton, which accepts exactly those forms.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def url_problem(url: object, allow_private_networks: bool = False) -> tuple[str, str] | None:
    """(reason, detail) when the URL must not be fetched, else None."""
    if not isinstance(url, str) or not url.strip():
        return "url_empty", "no URL"
    if len(url) > MAX_URL_LENGTH:
        return "url_malformed", f"{len(url)} characters > {MAX_URL_LENGTH}"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "url_malformed", "whitespace or control characters in the URL"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
        host = parts.hostname
    except ValueError as err:
        return "url_malformed", str(err)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return "url_scheme_not_allowed", f"{scheme or 'no'} scheme; only {', '.join(ALLOWED_SCHEMES)}"
    if not host:
        return "url_malformed", "no host"
    if parts.username is not None or parts.password is not None:  # urllib cannot send them: a dns_failure
        return "url_has_credentials", "a user name or password in the URL (not sent; give public URLs)"
    if not url.isascii():
        try:
            request_url(url)  # the form that is fetched: an IDNA host, percent-encoded path and query
        except (UnicodeError, ValueError) as err:
            return "url_malformed", f"the host is not a valid international domain name ({err})"
    if port == 0:
        return "url_malformed", "port 0"
    host = host.rstrip(".")
    address = _literal_address(host)
    if address is not None and is_link_local(address):
        return "url_private_address", f"{address} is link-local or a cloud metadata service: never fetched"
    if allow_private_networks:
        return None
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return "url_private_address", f"{host} is this machine"
    if address is not None and is_private_address(address):
        return "url_private_address", f"{address} is not a public address"
    return None


def request_url(url: str) -> str:
    """The URL as a browser sends it: an IDNA host, non-ASCII path and query percent-encoded
    (`/img/é.jpg` -> `/img/%C3%A9.jpg`); http.client refuses anything but ASCII."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        netloc = f"[{host}]"
    elif host.isascii():
        netloc = host
    else:  # UTS 46 without transitional mapping, as browsers do: straße stays straße (Python's codec says strasse)
        import idna

        try:
            netloc = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as err:
            raise UnicodeError(str(err)) from None
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=_SAFE), quote(parts.query, safe=_SAFE), ""))


def redact_credentials(url: object) -> object:
    """The URL with any user:password replaced, for tables and logs (never written in clear)."""
    return _replace_userinfo(url, "<redacted>@")


def without_credentials(url: object) -> object:
    """The URL with any user:password removed (what is resolved against and fetched)."""
    return _replace_userinfo(url, "")


def _replace_userinfo(url: object, replacement: str) -> object:
    if not isinstance(url, str) or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: whatever stands between // and @ goes
        return re.sub(r"//[^/?#]*@", "//" + replacement, url, count=1)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit((parts.scheme, replacement + parts.netloc.rsplit("@", 1)[1], parts.path, parts.query,
                       parts.fragment))
