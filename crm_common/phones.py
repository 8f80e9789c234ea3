"""Phone numbers stored as E.164 with the raw input kept, via the `phonenumbers` library."""
import re

import phonenumbers

_DIGITS = re.compile(r"\d")


def normalize_phone(raw, region):
    """Return {"raw", "e164", "national", "valid"}; "e164" is None when it cannot be parsed.

    "0039 333..." is the international prefix most of the world dials: read it as "+39".
    """
    text = str(raw).strip()
    cleaned = "+" + text[2:] if text.startswith("00") else text
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return {"raw": text, "e164": None, "national": _digits(text), "valid": False}
    return {
        "raw": text,
        "e164": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        "national": str(number.national_number),
        "valid": phonenumbers.is_valid_number(number),
    }


def _digits(text):
    return "".join(_DIGITS.findall(text))


def phone_search_keys(text, region):
    """Every stored key a typed phone fragment may match: its E.164 form, the same digits
    read as international, and the bare national digits."""
    keys = set()
    parsed = normalize_phone(text, region)
    if parsed["e164"]:
        keys.add(parsed["e164"])
        keys.add(parsed["national"])
    digits = _digits(text)
    if digits:
        keys.add(digits)
        keys.add("+" + digits)
    return sorted(keys)


def looks_like_phone(text):
    digits = len(_digits(text))
    return digits >= 5 and digits >= len(re.sub(r"[\s\-().+/]", "", text)) - 1
