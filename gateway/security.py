"""CORS, security headers and rate limits of the gateway (their settings: the gateway
section of crm_common.config).

Rate limits are fixed windows counted in the gateway database, so every gunicorn worker
(and every gateway replica) shares one counter per subject (user, API key, IP...).
`check_rate` does not write that counter on every request: each worker counts in process
and flushes its increments in the background every ~0.5 s (gateway.store.Syncer), deciding
with the shared count it last read plus its own unflushed hits. It goes to the database on
the request path only for the first hit of a subject in a window (the exact count to start
from) and near the limit (the last 10 %, at least the last 20 requests, so small limits
stay exact); a worker holding a quarter of that zone unflushed for one subject flushes at
once (in the background). Tolerance (docs/auth.md): beyond the limit, a subject may get
the hits other workers / replicas took for it and had not flushed yet, about a quarter of
the zone each (plus what arrives during one flush round trip). `check_rate_exact` and the
sign-in throttle (`check_login_throttle`, `record_login_failure`) do one database round
trip each, exactly."""
import math
import threading
from datetime import datetime, timedelta, timezone

from flask import g, request

from crm_common.errors import CrmError
from crm_common.timeutil import utcnow


class TooManyRequests(CrmError):
    code, status = "rate_limited", 429

    def __init__(self, message, retry_after):
        super().__init__(message, {"retry_after_s": retry_after})
        g.retry_after = retry_after


def _window(seconds):
    now = utcnow()
    start = int(now.timestamp()) // seconds * seconds
    return now, datetime.fromtimestamp(start, timezone.utc)


def check_rate(store, subject, limit, window_s=60):
    """One hit for `subject`; 429 with Retry-After once the window holds more than `limit`
    (across every worker and replica, within the tolerance in the module docstring; no
    database round trip on most requests). `store` is the gateway's GatewayStore."""
    now, start = _window(window_s)
    count = counters_for(store).hit(subject, start, window_s, limit)
    if count > limit:
        _refuse(now, start, window_s, f"Rate limit of {limit} requests per {window_s} s reached")


def client_ip(trusted_proxy_hops):
    """The client's address: behind N reverse proxies that append to X-Forwarded-For, the
    Nth entry from the end (CRM_TRUSTED_PROXY_HOPS), else the peer address."""
    if trusted_proxy_hops > 0:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")
                if h.strip()]
        if len(hops) >= trusted_proxy_hops:
            return hops[-trusted_proxy_hops][:64]
    return request.remote_addr or "unknown"


# groups whose limits are exact (one database round trip per hit): small limits that an
# attacker would otherwise stretch by the tolerance of the buffered counters
EXACT_GROUPS = ("login",)


def check_public_rate(store, group, ip, rates):
    """A public route (no sign-in: web forms, Telegram, provider webhooks, sign-in) counts
    one hit per client IP and one for everyone against its group's limits per minute
    (`rates`: group -> (per_ip, overall), crm_common.config; docs/auth.md), before its body
    is read or any service is asked. 0 turns a limit off."""
    per_ip, overall = rates.get(group) or rates["public"]
    check = check_rate_exact if group in EXACT_GROUPS else check_rate
    if per_ip:
        check(store, f"{group}-ip:{ip}", per_ip)
    if overall:
        check(store, f"{group}:all", overall)


def check_rate_exact(store, subject, limit, window_s=60):
    """Like check_rate, exact: one upsert of the shared counter per call (sign-in)."""
    now, start = _window(window_s)
    if store.hit(subject, start, window_s) > limit:
        _refuse(now, start, window_s, f"Rate limit of {limit} requests per {window_s} s reached")


def _refuse(now, start, window_s, message):
    retry = max(1, math.ceil(start.timestamp() + window_s - now.timestamp()))
    raise TooManyRequests(message, retry)


def exact_zone(limit):
    """How close to the limit every hit goes to the database (exact from there on)."""
    return max(limit // 10, min(limit, 20))


def flush_after(limit):
    """Unflushed hits of one subject after which a worker flushes without waiting for the
    next interval: what the other workers may not have seen stays well inside the zone."""
    return max(1, exact_zone(limit) // 4)


class _Count:
    __slots__ = ("shared", "pending", "expires_at")

    def __init__(self, expires_at):
        self.shared = 0      # the shared total last read (every worker's flushed hits)
        self.pending = 0     # this process's hits not flushed yet
        self.expires_at = expires_at


class BufferedCounters:
    """Per-process fixed-window counters over the shared ones in the gateway database."""

    def __init__(self, store):
        self.store = store
        self._counts = {}  # counter id -> _Count (only windows still open, or unflushed)
        self._lock = threading.Lock()
        store.syncer.add(self.flush)

    def hit(self, subject, start, window_s, limit):
        """Count one hit; returns the window's count with it (the shared total as last read
        plus this process's unflushed hits; exact when it matters, see the module doc)."""
        counter_id = f"{subject}:{int(start.timestamp())}"
        with self._lock:
            count = self._counts.get(counter_id)
            if count is not None:
                estimate = count.shared + count.pending + 1
                # over the limit in the database already (counts only grow in a window), or
                # far enough below it: decide here, flush later
                if count.shared > limit:
                    count.pending += 1
                    return estimate
                if estimate <= limit - exact_zone(limit):
                    count.pending += 1
                    if count.pending >= flush_after(limit):
                        # a busy subject: push this worker's share now (in the background),
                        # so the others see it well before they reach the exact zone
                        self.store.syncer.wake()
                    return estimate
                amount, count.pending, first = count.pending + 1, 0, False
            else:
                count = self._counts[counter_id] = _Count(start + timedelta(seconds=window_s))
                amount, first = 1, True
        # first hit of this window here, or close to the limit: add ours to the shared
        # counter now and decide on the total every flushed worker contributed to
        try:
            total = self.store.hit(subject, start, window_s, amount=amount)
        except Exception:
            with self._lock:
                count.pending += amount - 1  # this hit is not served; the earlier ones were
                if first and not count.pending and not count.shared:
                    # no exact count to start from yet: the next hit asks the database again
                    self._counts.pop(counter_id, None)
            raise
        with self._lock:
            count.shared = max(count.shared, total)
            return total + count.pending

    def flush(self):
        """Add every unflushed hit to the shared counters and read their totals back (one
        bulk write + one query per 50 subjects hit since the last flush). Run by the sync
        thread. Only the counters this worker added to are read back: reading every open
        one cost the database in proportion to the subjects seen this window (each agent
        who opened a stream once), twice a second per worker. An idle counter's total is
        read again with its next flush: its first hits after a pause decide on a total up
        to that pause old, at most flush_after(limit) of them before they are flushed (the
        tolerance above)."""
        now = utcnow()
        with self._lock:
            increments = {}
            for counter_id, count in list(self._counts.items()):
                if count.pending:
                    increments[counter_id] = (count.pending, count.expires_at)
                    count.pending = 0
                if count.expires_at <= now:
                    del self._counts[counter_id]  # window over: its count decides nothing
            read_ids = [cid for cid in increments if cid in self._counts]
        try:
            totals = self.store.add_hits(increments, read_ids)
        except Exception:
            with self._lock:  # keep them for the next flush
                for counter_id, (amount, expires_at) in increments.items():
                    if expires_at > now:
                        count = self._counts.setdefault(counter_id, _Count(expires_at))
                        count.pending += amount
            raise
        with self._lock:
            for counter_id, total in totals.items():
                count = self._counts.get(counter_id)
                if count is not None:
                    count.shared = max(count.shared, total)


_counters_lock = threading.Lock()


def counters_for(store):
    if store.rate_counters is None:
        with _counters_lock:
            if store.rate_counters is None:
                store.rate_counters = BufferedCounters(store)
    store.syncer.ensure_running()  # again after a fork
    return store.rate_counters


def check_login_throttle(store, subject, limit, window_s):
    """Refuse sign-in for `subject` (email + IP) once it failed `limit` times in the window."""
    now, start = _window(window_s)
    if store.count(subject, start) >= limit:
        retry = max(1, math.ceil(start.timestamp() + window_s - now.timestamp()))
        raise TooManyRequests("Too many failed sign-in attempts; try again later", retry)


def record_login_failure(store, subject, window_s):
    _, start = _window(window_s)
    store.hit(subject, start, window_s)


CORS_HEADERS = "Authorization, Content-Type, X-API-Key, Idempotency-Key, X-Request-Id"
CORS_METHODS = "GET, POST, PATCH, PUT, DELETE, OPTIONS"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# the docs page runs swagger-ui from this server, with one inline bootstrap script
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")


# set on every answer unless the route set its own (setdefault semantics)
_ALWAYS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
           ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Opener-Policy", "same-origin"),
           ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"))


def add_security_headers(response, cors_origins):
    # one pass over the headers the answer has, instead of a scan per header (werkzeug's
    # Headers is a list); request attributes read once (each is a context-local lookup)
    headers = response.headers
    req = request._get_current_object()
    path = req.path
    present = {key.lower() for key in headers.keys()}
    for name, value in _ALWAYS:
        if name.lower() not in present:
            headers.add(name, value)
    if "content-security-policy" not in present:
        headers.add("Content-Security-Policy",
                    DOCS_CSP if path.startswith("/api/docs") else API_CSP)
    if path.startswith("/api/v1") and "cache-control" not in present:
        headers.add("Cache-Control", "no-store")  # answers may carry tokens and PII
    if ((req.is_secure or req.headers.get("X-Forwarded-Proto") == "https")
            and "strict-transport-security" not in present):
        headers.add("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if response.status_code == 401 and "www-authenticate" not in present:
        headers.add("WWW-Authenticate", 'Bearer realm="crm"')
    if g.get("retry_after"):
        headers["Retry-After"] = str(g.retry_after)
    _cors(response, cors_origins, req)
    return response


def _cors(response, allowed, req):
    origin = req.headers.get("Origin")
    response.headers.add("Vary", "Origin")
    if not origin or not allowed:
        return
    if "*" not in allowed and origin.rstrip("/") not in allowed:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
    if req.method == "OPTIONS" and req.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
