"""The one place that reads the environment. Defaults work on a developer machine."""
import os
from dataclasses import dataclass, field

SERVICES = ("contacts", "deals", "tasks", "notifications", "telephony")


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
    # signs list cursors (crm_common.cursors); the same value in every service and gateway
    cursor_secret: str = field(default="", repr=False)
    # Idempotency-Key (gateway): how long a second request waits for the first's answer,
    # and after how long a claim whose worker died is taken over
    idempotency_wait_s: float = 10.0
    idempotency_lock_s: float = 300.0
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
        cursor_secret=_env("CRM_CURSOR_SECRET", _env("CRM_JWT_SECRET", "")),
        idempotency_wait_s=float(_env("CRM_IDEMPOTENCY_WAIT_S", "10")),
        idempotency_lock_s=float(_env("CRM_IDEMPOTENCY_LOCK_S", "300")),
    )
