"""The one place that reads the environment. Defaults work on a developer machine."""
import os
import tempfile
from dataclasses import dataclass, field

SERVICES = ("contacts", "deals", "tasks", "notifications", "telephony", "search")


def _env(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else value


@dataclass(frozen=True)
class Settings:
    amqp_uri: str
    mongo_url: str
    db_prefix: str
    default_region: str
    rpc_timeout: float
    max_body_bytes: int
    event_max_attempts: int
    # provider webhook secrets, checked by the gateway (telephony reads them too)
    twilio_auth_token: str = ""
    zadarma_api_secret: str = ""
    # the gateway's public URL as Twilio calls it; empty = the request's own URL
    telephony_public_base_url: str = ""
    # gateway: body limit of form posts and Telegram updates; reverse proxies in front
    form_max_bytes: int = 64 * 1024
    trusted_proxy_hops: int = 0
    # gateway: public routes' rate limits per minute, group -> (per client IP, overall)
    public_rates: dict = field(default_factory=dict)
    # gateway: a sign-in's tokens can be refreshed for this long, never longer
    session_max_s: int = 86400
    # contacts imports: what a spreadsheet may hold (services/contacts/imports.py)
    import_limits: dict = field(default_factory=dict)
    # signs list cursors (crm_common.cursors); the same value in every service and gateway
    cursor_secret: str = field(default="", repr=False)
    # Idempotency-Key (gateway): how long a second request waits for the first's answer,
    # and after how long a claim whose worker died is taken over
    idempotency_wait_s: float = 10.0
    idempotency_lock_s: float = 300.0
    # the search service (services/search/README.md): each replica's own index folder
    search_index_dir: str = ""
    search_commit_ms: int = 100
    search_queue_expires_hours: float = 72.0
    search_rebuild_page: int = 1000
    search_sync_seconds: float = 2.0
    # the outbox (crm_common.messaging.outbox): the broker it publishes to (empty: amqp_uri),
    # relay period, how long deletes gather, and failpoints (tests only: "name[@n],...")
    events_amqp_uri: str = ""
    outbox_relay_s: float = 1.0
    outbox_forget_gather_s: float = 0.25
    outbox_failpoints: str = ""
    env: dict = field(default_factory=dict, repr=False)

    def database_name(self, service):
        """Each service owns its own database; `<SERVICE>_MONGO_DB` overrides the name."""
        return _env(f"{service.upper()}_MONGO_DB", f"{self.db_prefix}{service}")


def load_settings():
    return Settings(
        amqp_uri=_env("AMQP_URI", "amqp://guest:guest@localhost:5672/"),
        mongo_url=_env("MONGO_URL", "mongodb://127.0.0.1:27017/"),
        db_prefix=_env("CRM_DB_PREFIX", "crm_"),
        default_region=_env("CRM_DEFAULT_REGION", "IT").upper(),
        rpc_timeout=float(_env("CRM_RPC_TIMEOUT", "5")),
        max_body_bytes=int(_env("CRM_MAX_BODY_BYTES", str(1024 * 1024))),
        event_max_attempts=int(_env("CRM_EVENT_MAX_ATTEMPTS", "5")),
        twilio_auth_token=_env("TWILIO_AUTH_TOKEN", ""),
        zadarma_api_secret=_env("ZADARMA_API_SECRET", ""),
        telephony_public_base_url=_env("TELEPHONY_PUBLIC_BASE_URL", "").rstrip("/"),
        form_max_bytes=int(_env("CRM_FORM_MAX_BYTES", str(64 * 1024))),
        trusted_proxy_hops=int(_env("CRM_TRUSTED_PROXY_HOPS", "0")),
        public_rates=_public_rates(),
        session_max_s=int(_env("CRM_SESSION_MAX_S", "86400")),
        import_limits={name: int(_env(f"CRM_IMPORT_{name.upper()}", default))
                       for name, default in IMPORT_LIMITS.items()},
        cursor_secret=_env("CRM_CURSOR_SECRET", _env("CRM_JWT_SECRET", "")),
        idempotency_wait_s=float(_env("CRM_IDEMPOTENCY_WAIT_S", "10")),
        idempotency_lock_s=float(_env("CRM_IDEMPOTENCY_LOCK_S", "300")),
        search_index_dir=_env("CRM_SEARCH_INDEX_DIR", os.path.join(
            tempfile.gettempdir(), "crm-search", _env("CRM_DB_PREFIX", "crm_"))),
        search_commit_ms=int(_env("CRM_SEARCH_COMMIT_MS", "100")),
        search_queue_expires_hours=float(_env("CRM_SEARCH_QUEUE_EXPIRES_HOURS", "72")),
        search_rebuild_page=int(_env("CRM_SEARCH_REBUILD_PAGE", "1000")),
        search_sync_seconds=float(_env("CRM_SEARCH_SYNC_SECONDS", "2")),
        events_amqp_uri=_env("CRM_EVENTS_AMQP_URI", ""),
        outbox_relay_s=float(_env("CRM_OUTBOX_RELAY_SECONDS", "1")),
        outbox_forget_gather_s=float(_env("CRM_OUTBOX_FORGET_GATHER_SECONDS", "0.25")),
        outbox_failpoints=_env("CRM_OUTBOX_FAILPOINTS", ""),
    )


# CRM_IMPORT_<NAME> (docs/import.md): sizes in bytes, the ratio as uncompressed/compressed
IMPORT_LIMITS = {"max_rows": "1000000", "max_columns": "256", "max_cells": "20000000",
                 "xlsx_max_uncompressed_bytes": str(1024 * 1024 * 1024),
                 "xlsx_max_ratio": "200", "xlsx_max_parts": "2000",
                 "xlsx_max_shared_strings_bytes": str(64 * 1024 * 1024),
                 "xlsx_max_other_part_bytes": str(8 * 1024 * 1024)}


def _public_rates():
    def pair(prefix, per_ip, overall, ip_name="PER_IP_PER_MINUTE"):
        return (int(_env(f"{prefix}_{ip_name}", per_ip)),
                int(_env(f"{prefix}_GLOBAL_PER_MINUTE", overall)))
    return {"forms": pair("CRM_FORM_RATE", "30", "6000"),
            "telegram": pair("CRM_TELEGRAM_RATE", "300", "6000"),
            "provider_webhooks": pair("CRM_PROVIDER_WEBHOOK_RATE", "3000", "30000"),
            "login": pair("CRM_LOGIN", "60", "1200"),
            "public": pair("CRM_PUBLIC_RATE", "600", "6000")}


@dataclass(frozen=True)
class StreamSettings:
    """The live stream process (gateway/stream/) and the console the gateway serves."""
    bind: str = "0.0.0.0:8001"
    heartbeat_s: float = 15.0
    buffer_size: int = 10000       # events kept for Last-Event-ID replay
    queue_size: int = 1000         # events waiting per stream before it is told to resync
    ticket_ttl_s: int = 60
    max_stream_s: int = 1800       # a stream ends then; the client reconnects (re-checked)
    upstream: str = ""             # dev/test front: other paths forwarded to the gateway
    web_dist: str = ""             # the console's build the gateway serves at /


def load_stream_settings():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return StreamSettings(
        bind=_env("STREAM_BIND", "0.0.0.0:8001"),
        heartbeat_s=float(_env("CRM_STREAM_HEARTBEAT_S", "15")),
        buffer_size=int(_env("CRM_STREAM_BUFFER", "10000")),
        queue_size=int(_env("CRM_STREAM_QUEUE", "1000")),
        ticket_ttl_s=int(_env("CRM_STREAM_TICKET_TTL_S", "60")),
        max_stream_s=int(_env("CRM_STREAM_MAX_S", "1800")),
        upstream=_env("CRM_STREAM_UPSTREAM", "").rstrip("/"),
        web_dist=_env("CRM_WEB_DIST", os.path.join(root, "web", "dist")))
