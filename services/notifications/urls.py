"""Webhook target safety: http(s) only, and never an address in a forbidden range
(private networks, cloud metadata, loopback outside dev, documentation and special-purpose
ranges), checked on every address the host name resolves to and on every IPv4 address an
IPv6 one carries (IPv4-mapped and -compatible, 6to4, NAT64, Teredo).

`resolve_url` resolves once and returns the checked addresses: the sender connects to one
of them (services/notifications/channels/webhook.py), never resolving the name again, so
a DNS answer that changes between the check and the send (rebinding) cannot redirect it."""
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# forbidden whatever CRM_WEBHOOK_FORBIDDEN_NETS says: documentation (TEST-NET-1/2/3,
# 2001:db8::/32), the 6to4 relay anycast, local-use NAT64, discard-only, benchmarking
# and Teredo (its client address is obfuscated) ranges
ALWAYS_FORBIDDEN = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "192.88.99.0/24",
    "2001:db8::/32", "64:ff9b:1::/48", "100::/64", "2001:2::/48", "2001::/32"))
# IPv6 ranges whose last 32 bits are an IPv4 address the packet ends up at
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


class UnsafeUrl(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    hostname: str       # as the URL names it (IDNA-encoded): Host header, TLS SNI
    port: int
    addresses: tuple    # every address the name resolved to, each checked


def embedded_ipv4(address):
    """The IPv4 addresses an IPv6 address carries (those a packet to it may reach)."""
    if address.version != 6:
        return []
    found = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found.extend(address.teredo)
    if (address in NAT64 or address in IPV4_TRANSLATED
            or (address in IPV4_COMPATIBLE and int(address) > 1)):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def forbidden_range(address, forbidden):
    for candidate in [address, *embedded_ipv4(address)]:
        for net in (*forbidden, *ALWAYS_FORBIDDEN):
            if candidate.version == net.version and candidate in net:
                return candidate, net
    return None


def resolve_url(url, settings):
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
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        hostname = parts.hostname.encode("idna").decode("ascii")
        infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {parts.hostname!r} does not resolve")
    forbidden = settings.webhook_forbidden()
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        hit = forbidden_range(address, forbidden)
        if hit:
            raise UnsafeUrl(f"{parts.hostname} resolves to {address}, in the forbidden range "
                            f"{hit[1]}" + (f" (through {hit[0]})" if hit[0] != address else ""))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"the host {parts.hostname!r} does not resolve")
    return Target(url, parts.scheme, hostname, port, tuple(addresses))


def check_url(url, settings):
    resolve_url(url, settings)
    return url
