"""Webhook target safety: http(s) only, and never an address in a forbidden range
(private networks, cloud metadata, loopback outside dev), checked on every address the
host name resolves to."""
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrl(ValueError):
    pass


def check_url(url, settings):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}")
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not allowed; use the secret")
    try:
        infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {parts.hostname!r} does not resolve")
    forbidden = settings.webhook_forbidden()
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        for net in forbidden:
            if address.version == net.version and address in net:
                raise UnsafeUrl(f"{parts.hostname} resolves to {address}, in the forbidden range {net}")
    return url
