"""Provider adapters: each maps what one telephony system posts onto canonical events
(contracts/telephony.py CanonicalEvent). They are pure functions of the payload
(plus settings), so they are unit-tested without a stack.

An adapter module has `to_canonical(payload, settings) -> [event dict, ...]` (wire format,
validated afterwards with ProviderEvent) and may have `reply(answer, payload)`: the body
the provider expects back (e.g. Zadarma's routing answer to NOTIFY_START)."""
import re

from crm_common.errors import ValidationFailed

_CHANNEL_EXTENSION = re.compile(r"^\w+/([^@/-]+)[@-]")


def require(payload, *names):
    missing = {name: ["Missing data for required field."] for name in names
               if not str(payload.get(name) or "").strip()}
    if missing:
        raise ValidationFailed("Invalid input", {"fields": missing})


def is_extension(number, settings):
    """A short all-digit number is a PBX extension (an agent's phone), not a phone number."""
    text = (number or "").strip()
    return text.isdigit() and len(text) <= settings.extension_max_digits


def channel_extension(channel):
    """"PJSIP/101-00000002" or "Local/101@from-queue-0000;1" -> "101"."""
    match = _CHANNEL_EXTENSION.match(channel or "")
    return match.group(1) if match else None


def clean(event):
    """Drop empty values so a missing field never overwrites a known one."""
    return {k: v for k, v in event.items() if v not in (None, "")}
