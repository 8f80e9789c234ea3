"""Turning validated input into stored documents: phones to E.164, search keys, tokens."""
import re

from crm_common.errors import ValidationFailed
from crm_common.phones import normalize_phone
from crm_common.text import fold

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_phones(items, region):
    phones, errors = [], {}
    for index, item in enumerate(items or []):
        parsed = normalize_phone(item["number"], region)
        if not parsed["e164"]:
            errors[str(index)] = {"number": ["Not a phone number."]}
            continue
        phones.append({"raw": parsed["raw"], "e164": parsed["e164"],
                       "national": parsed["national"], "valid": parsed["valid"],
                       "type": item.get("type", "mobile")})
    if errors:
        raise ValidationFailed("Invalid input", {"fields": {"phones": errors}})
    return _unique(phones, "e164")


def normalize_emails(items):
    emails = [{"email": item["email"].strip().lower(), "type": item.get("type", "work")}
              for item in items or []]
    return _unique(emails, "email")


def handle_key(channel, handle):
    """The indexed match key of a messenger identity: usernames (@name) compare without case,
    numeric ids and phone-like handles as they are."""
    handle = (handle or "").strip()
    if handle.startswith("@"):
        handle = handle.lower()
    return f"{channel}:{handle}"


def normalize_messengers(items):
    out = [{"channel": item["channel"], "handle": item["handle"].strip()}
           for item in items or [] if (item.get("handle") or "").strip()]
    for item in out:
        item["key"] = handle_key(item["channel"], item["handle"])
    return _unique(out, "key")


def _unique(items, key):
    seen, out = set(), []
    for item in items:
        if item[key] not in seen:
            seen.add(item[key])
            out.append(item)
    return out


def search_fields(doc):
    """Derived, indexed keys that lookups, duplicate checks and the name sort run on (words
    are searched in the search service's index, not here)."""
    emails = [e["email"] for e in doc.get("emails", [])]
    phone_keys = set()
    for phone in doc.get("phones", []):
        phone_keys.add(phone["e164"])
        phone_keys.add(phone["national"])
    return {
        "email_keys": emails,
        "handle_keys": [m.get("key") or handle_key(m["channel"], m["handle"])
                        for m in doc.get("messengers", [])],
        "phone_keys": sorted(phone_keys),
        "sort_name": fold(f"{doc.get('last_name') or ''} {doc.get('first_name') or ''}").strip(),
    }
