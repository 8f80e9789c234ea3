"""The one place that reads telephony's environment (the service and the gateway's
webhook routes both use it). Secrets are never logged or returned."""
from dataclasses import dataclass

from crm_common.config import _env


def _list(name):
    return tuple(x.strip() for x in _env(name, "").split(",") if x.strip())


def _flag(name, default):
    return _env(name, default).lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TelephonySettings:
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
    # click-to-call adapter: ami | http | none
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


def load_telephony_settings():
    return TelephonySettings(
        twilio_auth_token=_env("TWILIO_AUTH_TOKEN", ""),
        zadarma_api_secret=_env("ZADARMA_API_SECRET", ""),
        public_base_url=_env("TELEPHONY_PUBLIC_BASE_URL", "").rstrip("/"),
        own_numbers=_list("TELEPHONY_OWN_NUMBERS"),
        create_leads=_flag("TELEPHONY_CREATE_LEADS", "true"),
        lead_owner=_env("TELEPHONY_LEAD_OWNER", "round_robin"),
        extension_max_digits=int(_env("TELEPHONY_EXTENSION_MAX_DIGITS", "5")),
        originate=_env("TELEPHONY_ORIGINATE", "ami"),
        ami_host=_env("TELEPHONY_AMI_HOST", "127.0.0.1"),
        ami_port=int(_env("TELEPHONY_AMI_PORT", "5038")),
        ami_username=_env("TELEPHONY_AMI_USERNAME", "crm"),
        ami_secret=_env("TELEPHONY_AMI_SECRET", ""),
        ami_channel=_env("TELEPHONY_AMI_CHANNEL", "PJSIP/{extension}"),
        ami_context=_env("TELEPHONY_AMI_CONTEXT", "from-internal"),
        ami_timeout_s=float(_env("TELEPHONY_AMI_TIMEOUT_S", "30")),
        originate_url=_env("TELEPHONY_ORIGINATE_URL", ""),
        originate_secret=_env("TELEPHONY_ORIGINATE_SECRET", ""),
        caller_id=_env("TELEPHONY_CALLER_ID", ""),
    )

