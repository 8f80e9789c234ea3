"""The notifications service's own settings (channels, retries, webhook safety), read from
the environment in this one place. Shared settings (AMQP, Mongo) stay in crm_common.config."""
import ipaddress
import os
from dataclasses import dataclass

# Never a webhook target unless configured otherwise: private, link-local (cloud metadata),
# carrier-grade NAT, multicast, reserved and "this host" ranges. Loopback is separate so
# dev/test can allow it alone (CRM_WEBHOOK_ALLOW_LOOPBACK=1).
DEFAULT_FORBIDDEN = ("0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,"
                     "192.0.0.0/24,192.168.0.0/16,198.18.0.0/15,224.0.0.0/4,240.0.0.0/4,"
                     "fc00::/7,fe80::/10,ff00::/8,::/128")
LOOPBACK = ("127.0.0.0/8", "::1/128")


def _env(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _flag(name, default="0"):
    return _env(name, default).lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class NotifySettings:
    # delivery worker
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    lease_s: float
    batch: int
    concurrency: int
    send_timeout_s: float
    poll_s: float
    test_clock: bool
    # email
    smtp_host: str
    smtp_port: int
    smtp_tls: str          # none | starttls | ssl
    smtp_user: str
    smtp_password: str
    smtp_from: str
    # sms over an HTTP provider
    sms_url: str
    sms_auth: str          # "user:password" (basic) or "Bearer <token>"
    sms_body: str          # a sandboxed template with {{ to }} and {{ text }}
    sms_content_type: str
    # telegram
    telegram_base: str
    telegram_token: str
    # webhooks
    forbidden_nets: tuple
    allow_loopback: bool

    def webhook_forbidden(self):
        nets = list(self.forbidden_nets)
        if not self.allow_loopback:
            nets += [ipaddress.ip_network(n) for n in LOOPBACK]
        return nets


def load_notify_settings():
    nets = _env("CRM_WEBHOOK_FORBIDDEN_NETS", DEFAULT_FORBIDDEN)
    return NotifySettings(
        max_attempts=int(_env("CRM_NOTIFY_MAX_ATTEMPTS", "6")),
        backoff_s=float(_env("CRM_NOTIFY_BACKOFF_S", "10")),
        backoff_max_s=float(_env("CRM_NOTIFY_BACKOFF_MAX_S", "3600")),
        lease_s=float(_env("CRM_NOTIFY_LEASE_S", "60")),
        batch=int(_env("CRM_NOTIFY_BATCH", "100")),
        concurrency=int(_env("CRM_NOTIFY_CONCURRENCY", "20")),
        send_timeout_s=float(_env("CRM_NOTIFY_SEND_TIMEOUT_S", "10")),
        poll_s=float(_env("CRM_NOTIFY_POLL_S", "0.2")),
        test_clock=_flag("CRM_TEST_CLOCK"),
        smtp_host=_env("CRM_SMTP_HOST", "localhost"),
        smtp_port=int(_env("CRM_SMTP_PORT", "25")),
        smtp_tls=_env("CRM_SMTP_TLS", "none").lower(),
        smtp_user=_env("CRM_SMTP_USER", ""),
        smtp_password=_env("CRM_SMTP_PASSWORD", ""),
        smtp_from=_env("CRM_SMTP_FROM", "CRM <crm@localhost>"),
        sms_url=_env("CRM_SMS_URL", ""),
        sms_auth=_env("CRM_SMS_AUTH", ""),
        sms_body=_env("CRM_SMS_BODY", '{"to": {{ to|tojson }}, "text": {{ text|tojson }}}'),
        sms_content_type=_env("CRM_SMS_CONTENT_TYPE", "application/json"),
        telegram_base=_env("CRM_TELEGRAM_API", "https://api.telegram.org").rstrip("/"),
        telegram_token=_env("CRM_TELEGRAM_TOKEN", ""),
        forbidden_nets=tuple(ipaddress.ip_network(n.strip()) for n in nets.split(",") if n.strip()),
        allow_loopback=_flag("CRM_WEBHOOK_ALLOW_LOOPBACK"),
    )
