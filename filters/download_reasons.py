"""img2dataset's per-sample error messages -> short, countable rejection reasons."""

from __future__ import annotations

import re


GUARD_PRIVATE = "vlcurate refused a private network address"
GUARD_TOO_LARGE = "vlcurate refused a response larger than"
GUARD_SCHEME = "vlcurate refused a redirect to scheme"
GUARD_PIXELS = "vlcurate refused an image declaring more pixels than"
GUARD_DEADLINE = "vlcurate cut off a request that outran its deadline"

_HTTP = re.compile(r"HTTP Error (\d{3})")
# Checked before the HTTP status: urllib reports these as "HTTP Error 302: ..." too.
_BEFORE_STATUS: tuple[tuple[str, str], ...] = (
    ("infinite loop", "redirect_loop"),
    ("Redirection to url", "redirect_scheme_not_allowed"),  # urllib refusing file:, data:, ... itself
    (GUARD_SCHEME, "redirect_scheme_not_allowed"),
)
# (pattern in the message, reason), first match wins; messages come from urllib, ssl, socket, cv2 and img2dataset.
_RULES: tuple[tuple[str, str], ...] = (
    (GUARD_PRIVATE, "private_address"),
    (GUARD_TOO_LARGE, "response_too_large"),
    (GUARD_PIXELS, "image_too_many_pixels"),
    (GUARD_DEADLINE, "timeout"),
    (GUARD_SCHEME, "redirect_scheme_not_allowed"),
    ("X-Robots-Tag", "robots_opt_out"),
    ("timed out", "timeout"),
    ("Connection refused", "connection_refused"),
    ("Name or service not known", "dns_failure"),
    ("Temporary failure in name resolution", "dns_failure"),
    ("nodename nor servname", "dns_failure"),
    ("No address associated", "dns_failure"),
    ("CERTIFICATE_VERIFY_FAILED", "tls_error"),
    ("SSL", "tls_error"),
    ("redirect error", "redirect_loop"),
    ("Connection reset", "connection_error"),
    ("Remote end closed", "connection_error"),
    ("RemoteDisconnected", "connection_error"),
    ("IncompleteRead", "connection_error"),
    ("Network is unreachable", "connection_error"),
    ("No route to host", "connection_error"),
    ("image too small", "image_too_small"),
    ("image area too large", "image_area_too_large"),
    ("aspect ratio too large", "aspect_ratio_too_large"),
    ("Image decoding error", "not_an_image"),
    ("hash mismatch", "hash_mismatch"),
)


def download_reason(status: str | None, error_message: str | None) -> str:
    message = error_message or ""
    for needle, reason in _BEFORE_STATUS:
        if needle in message:
            return reason
    http = _HTTP.search(message)
    if http:
        return f"http_{http.group(1)}"
    for needle, reason in _RULES:
        if needle in message:
            return reason
    if status == "failed_to_resize":
        return "image_unreadable"
    return "download_failed"
