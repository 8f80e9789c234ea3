"""Gateway security settings, CORS, security headers and rate limits.

Rate limits are fixed one-minute windows counted in the gateway database, so every
gunicorn worker (and every gateway replica) shares one counter per user / API key; it costs
one upsert per request."""
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import g, request

from crm_common.errors import CrmError
from crm_common.timeutil import utcnow


def _env(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else value


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str          # empty: generated once and kept in the gateway database
    jwt_ttl_s: int
    admin_email: str
    admin_password: str
    cors_origins: tuple
    user_rate_per_minute: int
    key_rate_per_minute: int
    login_failures_per_window: int
    login_window_s: int
    login_per_ip_per_minute: int


def load_auth_settings():
    origins = tuple(o.strip().rstrip("/") for o in _env("CRM_CORS_ORIGINS", "").split(",")
                    if o.strip())
    return AuthSettings(
        jwt_secret=_env("CRM_JWT_SECRET", ""),
        jwt_ttl_s=int(_env("CRM_JWT_TTL_S", "3600")),
        admin_email=_env("CRM_ADMIN_EMAIL", "").strip().lower(),
        admin_password=_env("CRM_ADMIN_PASSWORD", ""),
        cors_origins=origins,
        user_rate_per_minute=int(_env("CRM_RATE_LIMIT_PER_MINUTE", "1200")),
        key_rate_per_minute=int(_env("CRM_API_KEY_RATE_LIMIT_PER_MINUTE", "3000")),
        login_failures_per_window=int(_env("CRM_LOGIN_MAX_FAILURES", "10")),
        login_window_s=int(_env("CRM_LOGIN_WINDOW_S", "300")),
        login_per_ip_per_minute=int(_env("CRM_LOGIN_PER_IP_PER_MINUTE", "60")),
    )


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
    """One hit for `subject`; 429 with Retry-After once the window holds more than `limit`."""
    now, start = _window(window_s)
    count = store.hit(subject, start, window_s)
    if count > limit:
        retry = max(1, math.ceil(start.timestamp() + window_s - now.timestamp()))
        raise TooManyRequests(f"Rate limit of {limit} requests per {window_s} s reached", retry)


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


def add_security_headers(response, cors_origins):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    headers.setdefault("Content-Security-Policy",
                       DOCS_CSP if request.path.startswith("/api/docs") else API_CSP)
    if request.path.startswith("/api/v1"):
        headers.setdefault("Cache-Control", "no-store")  # answers may carry tokens and PII
    if request.is_secure or request.headers.get("X-Forwarded-Proto") == "https":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if response.status_code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="crm"')
    if g.get("retry_after"):
        headers["Retry-After"] = str(g.retry_after)
    _cors(response, cors_origins)
    return response


def _cors(response, allowed):
    origin = request.headers.get("Origin")
    response.headers.add("Vary", "Origin")
    if not origin or not allowed:
        return
    if "*" not in allowed and origin.rstrip("/") not in allowed:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
