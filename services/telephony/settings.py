"""Telephony settings an admin changes through the API (GET/PATCH /settings/telephony):
stored in telephony's database over the environment's values (the defaults), secrets
write-only and encrypted at rest (Fernet), read by every replica with a short cache so a
change takes effect within SETTINGS_CACHE_S seconds without a restart. The gateway gets the
webhook secrets from `webhook_secrets` (telephony RPC), cached as briefly."""
import base64
import hashlib
import socket
import threading
import time
from dataclasses import fields as dataclass_fields, replace
from urllib.parse import urlparse

from cryptography.fernet import Fernet, InvalidToken

from crm_common.config import get_settings
from crm_common.errors import Unavailable, ValidationFailed
from crm_common.timeutil import to_iso, utcnow
from crm_common.validation import load
from contracts import telephony as schemas
from services.telephony.originate import ami

SETTINGS_CACHE_S = 2.0
SECRETS = ("twilio_auth_token", "twilio_shared_key_secret", "zadarma_api_secret",
           "ami_secret", "originate_secret")
settings_in = schemas.TelephonySettingsIn()
test_in = schemas.TelephonyTestIn()


def _cipher():
    """Fernet with TELEPHONY_SETTINGS_KEY (a Fernet key), else a key derived from the
    platform's shared secret (CRM_CURSOR_SECRET / CRM_JWT_SECRET); None: no key at all."""
    settings = get_settings()
    key = settings.telephony.settings_key
    if not key:
        if not settings.cursor_secret:
            return None
        digest = hashlib.sha256(b"telephony-settings:" + settings.cursor_secret.encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key.encode())


class RuntimeSettings:
    """The settings in force: the environment's, overridden by what is stored. One per
    process (the cache is shared by its workers)."""

    def __init__(self, env_settings):
        self.env = env_settings
        self._cached = None  # (loaded_at, settings)
        self._lock = threading.Lock()

    def current(self, store):
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < SETTINGS_CACHE_S:
            return cached[1]
        value = self._merge(store.telephony_settings())
        with self._lock:
            self._cached = (time.monotonic(), value)
        return value

    def forget(self):
        self._cached = None

    def _merge(self, doc):
        if not doc:
            return self.env
        values = dict(doc.get("values") or {})
        cipher = _cipher() if doc.get("secrets") else None
        for name, token in (doc.get("secrets") or {}).items():
            try:
                values[name] = cipher.decrypt(token.encode()).decode()
            except (InvalidToken, AttributeError):
                continue  # encrypted with another key: the environment's value stays
        known = {f.name for f in dataclass_fields(self.env)}
        for name in ("own_numbers", "line_responsible"):
            if name in values and values[name] is not None:
                values[name] = tuple(tuple(x) if isinstance(x, list) else x for x in values[name])
        return replace(self.env, **{k: v for k, v in values.items() if k in known and v is not None})


def view(settings, doc):
    """What GET shows: every value, and for each secret only whether it is set."""
    out = {}
    for field in dataclass_fields(settings):
        if field.name in SECRETS or field.name == "settings_key":
            continue
        value = getattr(settings, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    out["line_responsible"] = {n: u for n, u in settings.line_responsible}
    out["secrets"] = {name: {"set": bool(getattr(settings, name, "")),
                             "source": ("api" if name in ((doc or {}).get("secrets") or {})
                                        else "environment")} for name in SECRETS}
    out["version"] = (doc or {}).get("version", 0)
    out["updated_at"] = to_iso((doc or {}).get("updated_at"))
    out["updated_by"] = (doc or {}).get("updated_by")
    return out


def patch(store, runtime, payload, user_id):
    """Apply a change; a null value returns that setting to the environment's default."""
    data = load(settings_in, payload)
    if "line_responsible" in data and data["line_responsible"] is not None:
        data["line_responsible"] = sorted(data["line_responsible"].items())
    sets, unsets = {}, []
    cipher = None
    for name, value in data.items():
        if value is None:
            unsets.append(f"secrets.{name}" if name in SECRETS else f"values.{name}")
        elif name in SECRETS:
            cipher = cipher or _cipher()
            if cipher is None:
                raise Unavailable("No key to encrypt secrets: set TELEPHONY_SETTINGS_KEY", {})
            sets[f"secrets.{name}"] = cipher.encrypt(value.encode()).decode()
        else:
            sets[f"values.{name}"] = value
    if not sets and not unsets:
        raise ValidationFailed("Invalid input", {"fields": {"_schema": ["Nothing to change."]}})
    sets.update({"updated_at": utcnow(), "updated_by": user_id})
    doc = store.save_telephony_settings(sets, unsets)
    runtime.forget()
    return view(runtime.current(store), doc)


CONNECTOR_FIELDS = ("ami_host", "ami_port", "ami_username", "ami_secret", "originate_secret")


def connector_view(doc):
    """For the AMI connector: the AMI settings stored through the API, secrets decrypted
    (its own environment stays the default of what is absent)."""
    doc = doc or {}
    values = doc.get("values") or {}
    out = {name: values[name] for name in CONNECTOR_FIELDS if values.get(name) is not None}
    secrets = doc.get("secrets") or {}
    cipher = _cipher() if secrets else None
    for name in CONNECTOR_FIELDS:
        if name in secrets:
            try:
                out[name] = cipher.decrypt(secrets[name].encode()).decode()
            except (InvalidToken, AttributeError):
                continue
    return {"ami": out, "version": doc.get("version", 0)}


def webhook_secrets(settings):
    return {"twilio_auth_token": settings.twilio_auth_token,
            "twilio_shared_key_secret": settings.twilio_shared_key_secret,
            "zadarma_api_secret": settings.zadarma_api_secret,
            "public_base_url": settings.public_base_url}


def test_connection(settings, payload):
    """Check one provider's settings; says which step failed."""
    provider = load(test_in, payload)["provider"]
    checks = []

    def check(name, ok, detail=None):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return ok

    if provider == "twilio":
        check("auth token set", settings.twilio_auth_token or settings.twilio_shared_key_secret,
              None if settings.twilio_auth_token else "no auth token (nor SharedKey secret)")
        check("public base URL set", settings.public_base_url,
              None if settings.public_base_url else
              "not set: signatures are checked against the URL the gateway received")
        checks[-1]["ok"] = True  # advice, not a failure
    elif provider == "zadarma":
        check("API secret set", settings.zadarma_api_secret,
              None if settings.zadarma_api_secret else "no API secret")
    elif provider == "ami":
        _test_ami(settings, check)
    else:  # http click-to-call, or the AMI connector's endpoint
        url = settings.originate_url
        if check("originate URL set", url, None if url else "no originate URL"):
            parsed = urlparse(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            try:
                socket.create_connection((parsed.hostname, port), timeout=3).close()
                check("connect", True, f"{parsed.hostname}:{port}")
            except OSError as exc:
                check("connect", False, f"{parsed.hostname}:{port}: {exc}")
    failed = next((c for c in checks if not c["ok"]), None)
    return {"provider": provider, "ok": failed is None, "checks": checks,
            "error": f"{failed['check']}: {failed['detail']}" if failed else None}


def _test_ami(settings, check):
    if not check("host, username and secret set", not ami.not_configured(settings),
                 ami.not_configured(settings)):
        return
    try:
        session = ami.AmiSession(settings.ami_host, settings.ami_port, timeout=3)
    except (OSError, ami.AmiError) as exc:
        check("connect", False, f"{settings.ami_host}:{settings.ami_port}: {exc}")
        return
    check("connect", True, session.banner)
    try:
        _, login = session.action("Login", [("Username", settings.ami_username),
                                            ("Secret", settings.ami_secret)], "crm-test", timeout=3)
        if check("login", login.get("Response") == "Success", login.get("Message")):
            session.action("Logoff", [], "crm-test", timeout=3)
    except (OSError, ami.AmiError) as exc:
        check("login", False, str(exc))
    finally:
        session.close()
