"""Outgoing webhooks: the stored JSON body, signed with the subscription's secret.

`X-CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: receivers
recompute it over the bytes they received and refuse a `t` more than 5 minutes from their
clock, so a captured delivery cannot be replayed later (services/notifications/README.md).
`X-CRM-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` is the previous scheme,
still sent for receivers that have not moved yet (it does not stop a replay).

The target is resolved and checked once per attempt (services/notifications/urls.py) and
the request goes to the checked address: the name is never resolved again between the
check and the connection. Host header, TLS SNI and certificate check use the URL's name."""
import hashlib
import hmac
import ipaddress
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from services.notifications.urls import UnsafeUrl, resolve_url


def signature(secret, body, timestamp):
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def legacy_signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PinnedAdapter(HTTPAdapter):
    """Sends to the address in the request's URL; TLS speaks to (SNI) and verifies the
    certificate of the name in `request.pinned_host`."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        name = getattr(request, "pinned_host", None)
        if name and host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


_session, _session_lock = None, threading.Lock()


def pinned_session(pool_size=20):
    """One keep-alive session per process for webhooks: no proxy from the environment (the
    request must go to the checked address), pools per (address, name)."""
    global _session
    with _session_lock:
        if _session is None:
            session = requests.Session()
            session.trust_env = False
            adapter = PinnedAdapter(pool_connections=50, pool_maxsize=pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _session = session
    return _session


def _netloc(address, port):
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return f"{host}:{port}"


def _host_header(target):
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    return host if target.port == default else f"{host}:{target.port}"


def send(delivery, settings, http=None):
    from services.notifications.channels import Permanent, Retryable, check_response
    hook = delivery.get("webhook")
    if not hook or not hook.get("active"):
        raise Permanent("webhook deleted or disabled")
    try:
        target = resolve_url(hook["url"], settings)
    except UnsafeUrl as exc:
        raise Permanent(str(exc))
    body = delivery["body"].encode()
    headers = {"Content-Type": "application/json", "User-Agent": "crm-webhooks/1",
               "Host": _host_header(target),
               "X-CRM-Signature": signature(hook["secret"], body, int(time.time())),
               "X-CRM-Signature-256": legacy_signature(hook["secret"], body),
               "X-CRM-Event": delivery["event_type"], "X-CRM-Delivery": delivery["_id"]}
    parts = urlsplit(hook["url"])
    session = pinned_session(getattr(settings, "concurrency", 20))
    error = None
    for address in target.addresses:  # the checked addresses only, in the resolver's order
        request = requests.Request("POST", urlunsplit(
            parts._replace(netloc=_netloc(address, target.port))), data=body,
            headers=headers).prepare()
        request.pinned_host = target.hostname
        try:
            response = session.send(request, timeout=settings.send_timeout_s,
                                    allow_redirects=False)
        except requests.Timeout as exc:
            raise Retryable(f"receiver timed out: {exc}")
        except requests.ConnectionError as exc:
            error = exc  # this address refused: the next one the name resolved to
            continue
        except requests.RequestException as exc:
            raise Retryable(f"receiver unreachable: {exc}")
        return check_response(response, "receiver")
    raise Retryable(f"receiver unreachable: {error}")
