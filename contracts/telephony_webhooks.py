"""How the telephony providers sign their webhooks (part of the public contract: the gateway
checks these before any service sees the request).

Twilio: X-Twilio-Signature = base64(HMAC-SHA1(auth token, full URL + every POST parameter as
key + value, sorted by key)).
Zadarma: the Signature header is base64 of the *hex* HMAC-SHA1 (PHP hash_hmac's default
output) of some fields of each event concatenated, keyed with the API secret."""
import base64
import hashlib
import hmac


def twilio_signature(url, pairs, auth_token):
    data = url + "".join(key + value for key, value in sorted(pairs))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_twilio_signature(url, pairs, auth_token, header):
    if not auth_token or not header:
        return False
    return hmac.compare_digest(twilio_signature(url, pairs, auth_token), header)


SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}


def zadarma_signature(params, secret):
    fields = SIGNED_FIELDS.get(params.get("event"), ())
    data = "".join(params.get(name, "") for name in fields)
    hex_digest = hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(hex_digest.encode()).decode()


def valid_zadarma_signature(params, secret, header):
    if not secret or not header or params.get("event") not in SIGNED_FIELDS:
        return False
    return hmac.compare_digest(zadarma_signature(params, secret), header)
