"""The one place that reads the environment: one Settings object per process
(`get_settings()`), with a section per service and one for the gateway. Defaults work on a
developer machine; every variable is listed in the README (shared ones) or in the README of
the service that reads it, and provided by deploy/k8s/configmap.yaml. An empty variable
counts as unset."""
import ipaddress
import os
import tempfile
from dataclasses import dataclass, field

SERVICES = ("contacts", "deals", "tasks", "notifications", "telephony", "search",
            "notes", "conversations", "automation", "sales")

# Never a webhook target unless configured otherwise: private, link-local (cloud metadata),
# carrier-grade NAT, multicast, reserved and "this host" ranges. Loopback is separate so
# dev/test can allow it alone (CRM_WEBHOOK_ALLOW_LOOPBACK=1).
DEFAULT_FORBIDDEN = ("0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,"
                     "192.0.0.0/24,192.168.0.0/16,198.18.0.0/15,224.0.0.0/4,240.0.0.0/4,"
                     "fc00::/7,fe80::/10,ff00::/8,::/128")
LOOPBACK = ("127.0.0.0/8", "::1/128")


def forbidden_networks(nets, allow_loopback):
    """The networks a webhook may not reach: `nets`, plus loopback unless allowed."""
    return list(nets) + ([] if allow_loopback else [ipaddress.ip_network(n) for n in LOOPBACK])


class _Reader:
    """Typed reads of one environment mapping."""

    def __init__(self, environ):
        self.environ = environ

    def _str(self, name, default=""):
        value = self.environ.get(name)
        return default if value in (None, "") else value

    def _int(self, name, default):
        return int(self._str(name, str(default)))

    def _float(self, name, default):
        return float(self._str(name, str(default)))

    def _flag(self, name, default="0"):
        return self._str(name, default).lower() in ("1", "true", "yes", "on")

    def _list(self, name, default=""):
        return tuple(x.strip() for x in self._str(name, default).split(",") if x.strip())


@dataclass(frozen=True)
class TasksSettings:
    tick_seconds: float            # how often the timer scans for due reminders
    escalation_grace_minutes: int  # overdue this long and still open -> the manager is told
    callback_due_minutes: int      # a missed call's callback task is due this long after it
    scan_batch: int                # tasks read per batch (batches repeat within a tick)
    scan_concurrency: int          # tasks of a batch handled at once (publishes wait for confirms)
    claim_lease_seconds: int       # a claimed notice not marked sent by then is sent again
    test_clock: bool               # allow set_clock/advance_clock (tests only)


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
    cache_s: float         # how long preferences, subscriptions and users are kept in memory
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
        return forbidden_networks(self.forbidden_nets, self.allow_loopback)


@dataclass(frozen=True)
class TelephonySettings:
    """Secrets are never logged or returned. The gateway checks provider webhooks with the
    first three (and the SharedKey secret); an admin overrides any of these at runtime
    (services/telephony/settings.py): these are the defaults."""
    twilio_auth_token: str
    zadarma_api_secret: str
    # the gateway's public URL as Twilio calls it (behind a proxy the request's own URL
    # differs: scheme, host); empty = the URL of the request itself
    public_base_url: str
    # The company's own numbers: never looked up, never turned into leads.
    own_numbers: tuple
    create_leads: bool
    # who owns a lead created for an unknown caller: round_robin | answering_agent | none
    lead_owner: str
    # numbers with at most this many digits are PBX extensions, not phone numbers
    extension_max_digits: int
    # click-to-call adapter: ami (own AMI login) | connector (the AMI connector's login,
    # at originate_url) | http | none
    originate: str
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str
    ami_channel: str        # e.g. "PJSIP/{extension}"
    ami_context: str
    ami_timeout_s: float
    originate_url: str
    originate_secret: str
    caller_id: str          # the number shown to the callee on click-to-call
    # the SharedKey secret of a Twilio Webhook Rule (X-Twilio-Webhooks-Signature-Settings)
    twilio_shared_key_secret: str = field(default="", repr=False)
    # who calls back a missed call when the contact has no owner and no agent was rung:
    # the line's responsible user ((E.164 called number, user id), ...), else the default
    line_responsible: tuple = ()
    default_responsible_id: str = ""
    # Fernet key of the secrets stored through the API; empty: derived from cursor_secret
    settings_key: str = field(default="", repr=False)
    # recordings fetched from the provider and kept in GridFS (services/telephony/recordings.py)
    recording_retention_days: int = 365
    recording_max_bytes: int = 200 * 1024 * 1024
    recording_poll_s: float = 5.0
    # Zadarma's API (recordings are fetched through it): the user key (the secret is
    # zadarma_api_secret) and its base URL
    zadarma_api_key: str = ""
    zadarma_api_url: str = "https://api.zadarma.com"
    # how often telephony pulls the contacts changed since (imports announce no event per
    # contact) into its copy of who has which number (services/telephony/directory.py)
    contacts_sync_s: float = 60.0


@dataclass(frozen=True)
class ConversationsSettings:
    """services/conversations/README.md"""
    secret_key: str = field(default="", repr=False)  # Fernet key of mailbox/channel secrets
    sync_concurrency: int = 8          # mailboxes synced at once per process
    max_message_bytes: int = 30 * 1024 * 1024   # a larger mail is stored without its body
    max_attachment_bytes: int = 25 * 1024 * 1024  # a larger attachment is listed, not stored
    backoff_s: float = 30.0            # a failing mailbox waits this, doubled per failure
    backoff_max_s: float = 3600.0
    idle_s: float = 25.0               # one IDLE wait before the mailbox is checked anyway
    lease_s: float = 120.0             # a mailbox or a send claimed longer is taken over
    send_lease_s: float = 60.0
    send_attempts: int = 5
    send_concurrency: int = 4          # connections (SMTP, IMAP) per mailbox sending at once
    tick_s: float = 1.0                # due mailboxes, queued messages, escalations
    timeout_s: float = 30.0            # socket timeout of IMAP/SMTP/HTTP calls
    failpoints: str = ""               # tests only: "after_data", "after_smtp", "after_append"


@dataclass(frozen=True)
class ContactsSettings:
    import_max_bytes: int        # an import's file limit (the gateway's upload limit too)
    import_batch: int            # rows per batch of an import job
    import_lease_seconds: float  # a job whose runner stopped is taken over after this
    import_poll_seconds: float   # how often the job timer looks for work
    # what a spreadsheet may hold (services/contacts/imports.py; docs/import.md): sizes in
    # bytes, the ratio as uncompressed/compressed
    import_limits: dict


@dataclass(frozen=True)
class SearchSettings:
    """services/search/README.md"""
    index_dir: str               # each replica's own index folder
    commit_ms: int
    queue_expires_hours: float
    rebuild_page: int


@dataclass(frozen=True)
class AutomationSettings:
    """services/automation/README.md"""
    tick_seconds: float          # the timer: delayed runs, retries, time triggers
    loop_limit: int              # automation steps in one cause chain before a rule stops
    action_max_attempts: int     # an action whose service is down is retried this often
    retry_backoff_s: float       # first retry wait, doubling
    lease_s: float               # a run whose process died is taken over after this
    batch: int                   # due runs read per tick
    scan_limit: int              # records a time rule reads per tick
    events_keep_days: int        # events kept for dry runs
    keep_events_of: tuple        # sources whose events are always kept (others: a rule's)
    webhook_timeout_s: float
    invoice_service: str         # the service answering create_invoice_from_deal
    public_base_url: str         # unsubscribe links: <this>/u/<token>
    campaign_rate_per_minute: int  # messages per minute per campaign unless it says
    test_clock: bool
    forbidden_nets: tuple = ()
    allow_loopback: bool = False

    def webhook_forbidden(self):
        return forbidden_networks(self.forbidden_nets, self.allow_loopback)


@dataclass(frozen=True)
class SalesSettings:
    """services/sales/README.md"""
    file_max_bytes: int          # one uploaded file at most (the upload route's body limit too)
    link_max_seconds: int        # a shared file link lives at most this long
    overdue_tick_seconds: float  # how often invoices past their due date are looked for
    won_on_paid: bool            # a fully paid invoice moves its deal to the pipeline's won stage
    test_clock: bool


@dataclass(frozen=True)
class StreamSettings:
    """The live stream process (gateway/stream/) and the console the gateway serves."""
    bind: str
    heartbeat_s: float
    buffer_size: int       # events kept for Last-Event-ID replay
    queue_size: int        # events waiting per stream before it is told to resync
    ticket_ttl_s: int
    max_stream_s: int      # a stream ends then; the client reconnects (re-checked)
    upstream: str          # dev/test front: other paths forwarded to the gateway
    web_dist: str          # the console's build the gateway serves at /


@dataclass(frozen=True)
class GatewaySettings:
    # auth (docs/auth.md)
    jwt_secret: str          # empty: generated once and kept in the gateway database
    jwt_ttl_s: int
    admin_email: str
    admin_password: str
    cors_origins: tuple
    user_rate_per_minute: int
    key_rate_per_minute: int
    login_failures_per_window: int
    login_window_s: int
    identity_cache_ttl_s: float  # 0: resolve the identity from the database every request
    session_max_s: int       # a sign-in's tokens can be refreshed for this long, never longer
    # Idempotency-Key: how long a second request waits for the first's answer, and after
    # how long a claim whose worker died is taken over
    idempotency_wait_s: float
    idempotency_lock_s: float
    # public routes' rate limits per minute: group -> (per client IP, overall)
    public_rates: dict
    # inbound requests (docs/leads.md): body limit of form posts and Telegram updates
    form_max_bytes: int
    form_rate_per_form: int
    trusted_proxy_hops: int  # reverse proxies appending to X-Forwarded-For
    # RPC deadlines of the long calls
    export_page_timeout: float
    duplicates_rpc_timeout: float
    import_rpc_timeout: float
    # gunicorn and metrics
    bind: str
    workers: int
    threads: int
    timeout: int
    # what gunicorn refuses before the app sees a request: request line, header count,
    # size of one header line
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    access_log: str
    log_level: str
    prometheus_multiproc_dir: str
    # argon2id cost of a password hash: (time cost, memory KiB, parallelism); the defaults
    # are argon2-cffi's recommended ones (~64 MiB and 50-200 ms of CPU per hash or check)
    password_hash_cost: tuple = (3, 65536, 4)


@dataclass(frozen=True)
class AmiConnectorSettings:
    """The Asterisk AMI connector (connectors/asterisk): AMI from telephony's ami_* settings,
    events posted to the gateway with an API key (scope telephony:write)."""
    enabled: bool              # `./crm up` starts it (CRM_AMI_CONNECTOR=on)
    gateway_url: str           # the gateway's base URL, e.g. http://gateway:8000
    api_key: str = field(repr=False)
    spool_path: str            # events not yet posted, kept across restarts (JSON lines)
    buffer_max: int            # events held in memory; the rest wait in the spool file
    backoff_max_s: float       # reconnect / re-post backoff cap (doubling from 0.1 s)
    post_timeout_s: float      # one POST to the gateway
    # click-to-call endpoint "host:port" telephony calls (connectors/asterisk/originate.py);
    # empty: none
    listen: str = ""
    # how often the AMI settings are read from the telephony settings API
    settings_poll_s: float = 10.0


@dataclass(frozen=True)
class Settings:
    amqp_uri: str
    mongo_url: str
    db_prefix: str
    default_region: str
    rpc_timeout: float
    max_body_bytes: int
    event_max_attempts: int
    metrics_port: int = 0          # 0: no metrics server (several processes on one machine)
    heartbeat_file: str = ""       # empty: crm-<service>.heartbeat in the temp folder
    # signs list cursors (crm_common.cursors); the same value in every service and gateway
    cursor_secret: str = field(default="", repr=False)
    # the outbox (crm_common.messaging.outbox): the broker it publishes to (empty: amqp_uri),
    # relay period, how long deletes gather, and failpoints (tests only: "name[@n],...")
    events_amqp_uri: str = ""
    outbox_relay_s: float = 1.0
    outbox_forget_gather_s: float = 0.25
    outbox_failpoints: str = ""
    database_names: dict = field(default_factory=dict, repr=False)
    tasks: TasksSettings = None
    notifications: NotifySettings = None
    telephony: TelephonySettings = None
    contacts: ContactsSettings = None
    search: SearchSettings = None
    automation: AutomationSettings = None
    sales: SalesSettings = None
    gateway: GatewaySettings = None
    stream: StreamSettings = None
    ami_connector: AmiConnectorSettings = None
    conversations: ConversationsSettings = None

    def database_name(self, service):
        """Each service owns its own database; `<SERVICE>_MONGO_DB` overrides the name."""
        return self.database_names.get(service) or f"{self.db_prefix}{service}"


def _tasks(env, test_clock):
    return TasksSettings(
        tick_seconds=env._float("CRM_TASKS_TICK_SECONDS", "10"),
        escalation_grace_minutes=env._int("CRM_TASKS_ESCALATION_GRACE_MINUTES", "60"),
        callback_due_minutes=env._int("CRM_TASKS_CALLBACK_DUE_MINUTES", "60"),
        scan_batch=env._int("CRM_TASKS_SCAN_BATCH", "200"),
        scan_concurrency=env._int("CRM_TASKS_SCAN_CONCURRENCY", "16"),
        claim_lease_seconds=env._int("CRM_TASKS_CLAIM_LEASE_SECONDS", "120"),
        test_clock=test_clock,
    )


def _notifications(env, test_clock):
    nets = env._list("CRM_WEBHOOK_FORBIDDEN_NETS", DEFAULT_FORBIDDEN)
    return NotifySettings(
        max_attempts=env._int("CRM_NOTIFY_MAX_ATTEMPTS", "6"),
        backoff_s=env._float("CRM_NOTIFY_BACKOFF_S", "10"),
        backoff_max_s=env._float("CRM_NOTIFY_BACKOFF_MAX_S", "3600"),
        lease_s=env._float("CRM_NOTIFY_LEASE_S", "60"),
        batch=env._int("CRM_NOTIFY_BATCH", "100"),
        concurrency=env._int("CRM_NOTIFY_CONCURRENCY", "20"),
        send_timeout_s=env._float("CRM_NOTIFY_SEND_TIMEOUT_S", "10"),
        poll_s=env._float("CRM_NOTIFY_POLL_S", "0.2"),
        test_clock=test_clock,
        cache_s=env._float("CRM_NOTIFY_CACHE_S", "2"),
        smtp_host=env._str("CRM_SMTP_HOST", "localhost"),
        smtp_port=env._int("CRM_SMTP_PORT", "25"),
        smtp_tls=env._str("CRM_SMTP_TLS", "none").lower(),
        smtp_user=env._str("CRM_SMTP_USER", ""),
        smtp_password=env._str("CRM_SMTP_PASSWORD", ""),
        smtp_from=env._str("CRM_SMTP_FROM", "CRM <crm@localhost>"),
        sms_url=env._str("CRM_SMS_URL", ""),
        sms_auth=env._str("CRM_SMS_AUTH", ""),
        sms_body=env._str("CRM_SMS_BODY", '{"to": {{ to|tojson }}, "text": {{ text|tojson }}}'),
        sms_content_type=env._str("CRM_SMS_CONTENT_TYPE", "application/json"),
        telegram_base=env._str("CRM_TELEGRAM_API", "https://api.telegram.org").rstrip("/"),
        telegram_token=env._str("CRM_TELEGRAM_TOKEN", ""),
        forbidden_nets=tuple(ipaddress.ip_network(n) for n in nets),
        allow_loopback=env._flag("CRM_WEBHOOK_ALLOW_LOOPBACK"),
    )


def _telephony(env):
    return TelephonySettings(
        twilio_auth_token=env._str("TWILIO_AUTH_TOKEN", ""),
        zadarma_api_secret=env._str("ZADARMA_API_SECRET", ""),
        public_base_url=env._str("TELEPHONY_PUBLIC_BASE_URL", "").rstrip("/"),
        own_numbers=env._list("TELEPHONY_OWN_NUMBERS"),
        create_leads=env._flag("TELEPHONY_CREATE_LEADS", "true"),
        lead_owner=env._str("TELEPHONY_LEAD_OWNER", "round_robin"),
        extension_max_digits=env._int("TELEPHONY_EXTENSION_MAX_DIGITS", "5"),
        originate=env._str("TELEPHONY_ORIGINATE", "ami"),
        ami_host=env._str("TELEPHONY_AMI_HOST", "127.0.0.1"),
        ami_port=env._int("TELEPHONY_AMI_PORT", "5038"),
        ami_username=env._str("TELEPHONY_AMI_USERNAME", "crm"),
        ami_secret=env._str("TELEPHONY_AMI_SECRET", ""),
        ami_channel=env._str("TELEPHONY_AMI_CHANNEL", "PJSIP/{extension}"),
        ami_context=env._str("TELEPHONY_AMI_CONTEXT", "from-internal"),
        ami_timeout_s=env._float("TELEPHONY_AMI_TIMEOUT_S", "30"),
        originate_url=env._str("TELEPHONY_ORIGINATE_URL", ""),
        originate_secret=env._str("TELEPHONY_ORIGINATE_SECRET", ""),
        caller_id=env._str("TELEPHONY_CALLER_ID", ""),
        twilio_shared_key_secret=env._str("TWILIO_WEBHOOK_SHARED_KEY_SECRET", ""),
        # "+390212345678=u1,+390298765432=u2"
        line_responsible=tuple((k.strip(), v.strip()) for k, _, v in
                               (item.partition("=") for item in env._list("TELEPHONY_LINE_RESPONSIBLE"))
                               if k.strip() and v.strip()),
        default_responsible_id=env._str("TELEPHONY_DEFAULT_RESPONSIBLE_ID", ""),
        settings_key=env._str("TELEPHONY_SETTINGS_KEY", ""),
        recording_retention_days=env._int("TELEPHONY_RECORDING_RETENTION_DAYS", "365"),
        recording_max_bytes=env._int("TELEPHONY_RECORDING_MAX_BYTES", str(200 * 1024 * 1024)),
        recording_poll_s=env._float("TELEPHONY_RECORDING_POLL_S", "5"),
        zadarma_api_key=env._str("ZADARMA_API_KEY", ""),
        zadarma_api_url=env._str("ZADARMA_API_URL", "https://api.zadarma.com").rstrip("/"),
        contacts_sync_s=env._float("TELEPHONY_CONTACTS_SYNC_S", "60"),
    )


def _ami_connector(env):
    return AmiConnectorSettings(
        enabled=env._flag("CRM_AMI_CONNECTOR"),
        gateway_url=env._str("CRM_GATEWAY_URL", "http://127.0.0.1:8000").rstrip("/"),
        api_key=env._str("CRM_AMI_CONNECTOR_API_KEY", ""),
        spool_path=env._str("CRM_AMI_CONNECTOR_SPOOL",
                            os.path.join(tempfile.gettempdir(), "crm-ami-connector.spool")),
        buffer_max=env._int("CRM_AMI_CONNECTOR_BUFFER", "10000"),
        backoff_max_s=env._float("CRM_AMI_CONNECTOR_BACKOFF_MAX_S", "30"),
        post_timeout_s=env._float("CRM_AMI_CONNECTOR_POST_TIMEOUT_S", "5"),
        listen=env._str("CRM_AMI_CONNECTOR_LISTEN", ""),
        settings_poll_s=env._float("CRM_AMI_CONNECTOR_SETTINGS_POLL_S", "10"),
    )


def _contacts(env):
    return ContactsSettings(
        import_max_bytes=env._int("CRM_IMPORT_MAX_BYTES", 50 * 1024 * 1024),
        import_batch=env._int("CRM_IMPORT_BATCH", "1000"),
        import_lease_seconds=env._float("CRM_IMPORT_LEASE_SECONDS", "30"),
        import_poll_seconds=env._float("CRM_IMPORT_POLL_SECONDS", "1"),
        import_limits={
            "max_rows": env._int("CRM_IMPORT_MAX_ROWS", "1000000"),
            "max_columns": env._int("CRM_IMPORT_MAX_COLUMNS", "256"),
            "max_cells": env._int("CRM_IMPORT_MAX_CELLS", "20000000"),
            "xlsx_max_uncompressed_bytes": env._int("CRM_IMPORT_XLSX_MAX_UNCOMPRESSED_BYTES",
                                                    1024 * 1024 * 1024),
            "xlsx_max_ratio": env._int("CRM_IMPORT_XLSX_MAX_RATIO", "200"),
            "xlsx_max_parts": env._int("CRM_IMPORT_XLSX_MAX_PARTS", "2000"),
            "xlsx_max_shared_strings_bytes": env._int("CRM_IMPORT_XLSX_MAX_SHARED_STRINGS_BYTES",
                                                      64 * 1024 * 1024),
            "xlsx_max_other_part_bytes": env._int("CRM_IMPORT_XLSX_MAX_OTHER_PART_BYTES",
                                                  8 * 1024 * 1024)},
    )


def _search(env):
    return SearchSettings(
        index_dir=env._str("CRM_SEARCH_INDEX_DIR", os.path.join(
            tempfile.gettempdir(), "crm-search", env._str("CRM_DB_PREFIX", "crm_"))),
        commit_ms=env._int("CRM_SEARCH_COMMIT_MS", "500"),
        queue_expires_hours=env._float("CRM_SEARCH_QUEUE_EXPIRES_HOURS", "72"),
        rebuild_page=env._int("CRM_SEARCH_REBUILD_PAGE", "1000"),
    )


def _automation(env, test_clock):
    return AutomationSettings(
        tick_seconds=env._float("CRM_AUTOMATION_TICK_SECONDS", "5"),
        loop_limit=env._int("CRM_AUTOMATION_LOOP_LIMIT", "5"),
        action_max_attempts=env._int("CRM_AUTOMATION_ACTION_MAX_ATTEMPTS", "5"),
        retry_backoff_s=env._float("CRM_AUTOMATION_RETRY_BACKOFF_S", "30"),
        lease_s=env._float("CRM_AUTOMATION_LEASE_S", "120"),
        batch=env._int("CRM_AUTOMATION_BATCH", "200"),
        scan_limit=env._int("CRM_AUTOMATION_SCAN_LIMIT", "500"),
        events_keep_days=env._int("CRM_AUTOMATION_EVENTS_KEEP_DAYS", "31"),
        keep_events_of=env._list("CRM_AUTOMATION_KEEP_EVENTS_OF", "contacts,deals,tasks,sales"),
        webhook_timeout_s=env._float("CRM_AUTOMATION_WEBHOOK_TIMEOUT_S", "5"),
        invoice_service=env._str("CRM_AUTOMATION_INVOICE_SERVICE", "sales"),
        public_base_url=env._str("CRM_PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/"),
        campaign_rate_per_minute=env._int("CRM_CAMPAIGN_RATE_PER_MINUTE", "600"),
        test_clock=test_clock,
        forbidden_nets=tuple(ipaddress.ip_network(n) for n in
                             env._list("CRM_WEBHOOK_FORBIDDEN_NETS", DEFAULT_FORBIDDEN)),
        allow_loopback=env._flag("CRM_WEBHOOK_ALLOW_LOOPBACK"),
    )


def _sales(env, test_clock):
    return SalesSettings(
        file_max_bytes=env._int("CRM_FILE_MAX_BYTES", 100 * 1024 * 1024),
        link_max_seconds=env._int("CRM_FILE_LINK_MAX_SECONDS", 30 * 24 * 3600),
        overdue_tick_seconds=env._float("CRM_SALES_OVERDUE_TICK_SECONDS", "60"),
        won_on_paid=env._flag("CRM_SALES_WON_ON_PAID", "true"),
        test_clock=test_clock,
    )


def _stream(env):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return StreamSettings(
        bind=env._str("STREAM_BIND", "0.0.0.0:8001"),
        heartbeat_s=env._float("CRM_STREAM_HEARTBEAT_S", "15"),
        buffer_size=env._int("CRM_STREAM_BUFFER", "10000"),
        queue_size=env._int("CRM_STREAM_QUEUE", "1000"),
        ticket_ttl_s=env._int("CRM_STREAM_TICKET_TTL_S", "60"),
        max_stream_s=env._int("CRM_STREAM_MAX_S", "1800"),
        upstream=env._str("CRM_STREAM_UPSTREAM", "").rstrip("/"),
        web_dist=env._str("CRM_WEB_DIST", os.path.join(root, "web", "dist")),
    )


def _gateway(env):
    return GatewaySettings(
        jwt_secret=env._str("CRM_JWT_SECRET", ""),
        jwt_ttl_s=env._int("CRM_JWT_TTL_S", "3600"),
        admin_email=env._str("CRM_ADMIN_EMAIL", "").strip().lower(),
        admin_password=env._str("CRM_ADMIN_PASSWORD", ""),
        cors_origins=tuple(o.rstrip("/") for o in env._list("CRM_CORS_ORIGINS")),
        user_rate_per_minute=env._int("CRM_RATE_LIMIT_PER_MINUTE", "1200"),
        key_rate_per_minute=env._int("CRM_API_KEY_RATE_LIMIT_PER_MINUTE", "3000"),
        login_failures_per_window=env._int("CRM_LOGIN_MAX_FAILURES", "10"),
        login_window_s=env._int("CRM_LOGIN_WINDOW_S", "300"),
        identity_cache_ttl_s=env._float("CRM_AUTH_CACHE_TTL_S", "5"),
        session_max_s=env._int("CRM_SESSION_MAX_S", "86400"),
        idempotency_wait_s=env._float("CRM_IDEMPOTENCY_WAIT_S", "10"),
        idempotency_lock_s=env._float("CRM_IDEMPOTENCY_LOCK_S", "300"),
        public_rates={
            "forms": (env._int("CRM_FORM_RATE_PER_IP_PER_MINUTE", "30"),
                      env._int("CRM_FORM_RATE_GLOBAL_PER_MINUTE", "6000")),
            "telegram": (env._int("CRM_TELEGRAM_RATE_PER_IP_PER_MINUTE", "300"),
                         env._int("CRM_TELEGRAM_RATE_GLOBAL_PER_MINUTE", "6000")),
            "provider_webhooks": (env._int("CRM_PROVIDER_WEBHOOK_RATE_PER_IP_PER_MINUTE", "3000"),
                                  env._int("CRM_PROVIDER_WEBHOOK_RATE_GLOBAL_PER_MINUTE", "30000")),
            "login": (env._int("CRM_LOGIN_PER_IP_PER_MINUTE", "60"),
                      env._int("CRM_LOGIN_GLOBAL_PER_MINUTE", "1200")),
            "public": (env._int("CRM_PUBLIC_RATE_PER_IP_PER_MINUTE", "600"),
                       env._int("CRM_PUBLIC_RATE_GLOBAL_PER_MINUTE", "6000"))},
        form_max_bytes=env._int("CRM_FORM_MAX_BYTES", 64 * 1024),
        form_rate_per_form=env._int("CRM_FORM_RATE_PER_FORM_PER_MINUTE", "600"),
        trusted_proxy_hops=env._int("CRM_TRUSTED_PROXY_HOPS", "0"),
        export_page_timeout=env._float("CRM_EXPORT_PAGE_TIMEOUT", "60"),
        duplicates_rpc_timeout=env._float("CRM_DUPLICATES_RPC_TIMEOUT", "60"),
        import_rpc_timeout=env._float("CRM_IMPORT_RPC_TIMEOUT", "120"),
        bind=env._str("GATEWAY_BIND", "0.0.0.0:8000"),
        workers=env._int("GATEWAY_WORKERS", "2"),
        threads=env._int("GATEWAY_THREADS", "8"),
        timeout=env._int("GATEWAY_TIMEOUT", "30"),
        limit_request_line=env._int("GATEWAY_LIMIT_REQUEST_LINE", "8190"),
        limit_request_fields=env._int("GATEWAY_LIMIT_REQUEST_FIELDS", "100"),
        limit_request_field_size=env._int("GATEWAY_LIMIT_REQUEST_FIELD_SIZE", "8190"),
        access_log=env._str("GATEWAY_ACCESS_LOG", ""),
        log_level=env._str("LOG_LEVEL", "INFO"),
        prometheus_multiproc_dir=env._str("PROMETHEUS_MULTIPROC_DIR", ""),
        password_hash_cost=(env._int("CRM_PASSWORD_HASH_TIME_COST", "3"),
                            env._int("CRM_PASSWORD_HASH_MEMORY_KIB", "65536"),
                            env._int("CRM_PASSWORD_HASH_PARALLELISM", "4")),
    )


def _conversations(env):
    return ConversationsSettings(
        secret_key=env._str("CRM_CONVERSATIONS_SECRET_KEY", ""),
        sync_concurrency=env._int("CRM_CONVERSATIONS_SYNC_CONCURRENCY", "8"),
        max_message_bytes=env._int("CRM_CONVERSATIONS_MAX_MESSAGE_BYTES", str(30 * 1024 * 1024)),
        max_attachment_bytes=env._int("CRM_CONVERSATIONS_MAX_ATTACHMENT_BYTES",
                                      str(25 * 1024 * 1024)),
        backoff_s=env._float("CRM_CONVERSATIONS_BACKOFF_S", "30"),
        backoff_max_s=env._float("CRM_CONVERSATIONS_BACKOFF_MAX_S", "3600"),
        idle_s=env._float("CRM_CONVERSATIONS_IDLE_S", "25"),
        lease_s=env._float("CRM_CONVERSATIONS_LEASE_S", "120"),
        send_lease_s=env._float("CRM_CONVERSATIONS_SEND_LEASE_S", "60"),
        send_attempts=env._int("CRM_CONVERSATIONS_SEND_ATTEMPTS", "5"),
        send_concurrency=env._int("CRM_CONVERSATIONS_SEND_CONCURRENCY", "4"),
        tick_s=env._float("CRM_CONVERSATIONS_TICK_S", "1"),
        timeout_s=env._float("CRM_CONVERSATIONS_TIMEOUT_S", "30"),
        failpoints=env._str("CRM_CONVERSATIONS_FAILPOINTS", ""),
    )


def load_settings(environ=None):
    """Settings read now from `environ` (default: the process environment). Product code
    uses get_settings(); this is for tests that change the environment."""
    env = _Reader(os.environ if environ is None else environ)
    test_clock = env._flag("CRM_TEST_CLOCK")
    return Settings(
        amqp_uri=env._str("AMQP_URI", "amqp://guest:guest@localhost:5672/"),
        mongo_url=env._str("MONGO_URL", "mongodb://127.0.0.1:27017/"),
        db_prefix=env._str("CRM_DB_PREFIX", "crm_"),
        default_region=env._str("CRM_DEFAULT_REGION", "IT").upper(),
        rpc_timeout=env._float("CRM_RPC_TIMEOUT", "5"),
        max_body_bytes=env._int("CRM_MAX_BODY_BYTES", 1024 * 1024),
        event_max_attempts=env._int("CRM_EVENT_MAX_ATTEMPTS", "5"),
        metrics_port=env._int("CRM_METRICS_PORT", "0"),
        heartbeat_file=env._str("CRM_HEARTBEAT_FILE", ""),
        cursor_secret=env._str("CRM_CURSOR_SECRET", env._str("CRM_JWT_SECRET", "")),
        events_amqp_uri=env._str("CRM_EVENTS_AMQP_URI", ""),
        outbox_relay_s=env._float("CRM_OUTBOX_RELAY_SECONDS", "1"),
        outbox_forget_gather_s=env._float("CRM_OUTBOX_FORGET_GATHER_SECONDS", "0.25"),
        outbox_failpoints=env._str("CRM_OUTBOX_FAILPOINTS", ""),
        # <SERVICE>_MONGO_DB: optional overrides, by design not in the k8s ConfigMap
        database_names={service: env._str(f"{service.upper()}_MONGO_DB")
                        for service in (*SERVICES, "gateway")
                        if env._str(f"{service.upper()}_MONGO_DB")},
        tasks=_tasks(env, test_clock),
        notifications=_notifications(env, test_clock),
        telephony=_telephony(env),
        contacts=_contacts(env),
        search=_search(env),
        automation=_automation(env, test_clock),
        sales=_sales(env, test_clock),
        gateway=_gateway(env),
        stream=_stream(env),
        ami_connector=_ami_connector(env),
        conversations=_conversations(env),
    )


_settings = None


def get_settings():
    """This process's settings, read from the environment once."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings
