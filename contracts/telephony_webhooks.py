"""How the telephony providers sign their webhooks (part of the public contract: the gateway
checks these before any service sees the request).

Twilio: X-Twilio-Signature = base64(HMAC-SHA1(auth token, full URL + every POST parameter as
key + value, sorted by key)); a Webhook Rule with a SharedKey signs with that key's secret and
the algorithm X-Twilio-Webhooks-Signature-Settings names (HMAC_SHA256); the URL is signed
with or without its default port.
Zadarma: the Signature header is base64 of the *hex* HMAC-SHA1 (PHP hash_hmac's default
output) of some fields of each event concatenated, keyed with the API secret."""
import base64
import hashlib
import hmac
from urllib.parse import urlparse


TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
# present when a Twilio Webhook Rule signs with a SharedKey: "key=<key sid>,algorithm=<alg>"
TWILIO_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1, HMAC_SHA256 = "HMAC_SHA1", "HMAC_SHA256"
_TWILIO_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


def twilio_algorithm(settings_header):
    """The algorithm the settings header names; none (or no header): HMAC_SHA1."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return HMAC_SHA1


def twilio_signature(url, pairs, secret, algorithm=HMAC_SHA1):
    """The full URL, then each parameter name (sorted) followed by each of its values
    (sorted, repeats once), HMAC'd with the auth token (or the SharedKey secret)."""
    values = {}
    for key, value in pairs:
        values.setdefault(key, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(secret.encode(), data.encode(), _TWILIO_HASHES[algorithm]).digest()
    return base64.b64encode(digest).decode()


def _twilio_urls(url):
    """Twilio signs the URL it called, with or without the port: the URL without any port,
    and with the scheme's default port when it has none."""
    parsed = urlparse(url)
    without = parsed._replace(netloc=parsed.netloc.rsplit(":", 1)[0]).geturl() if parsed.port else url
    with_port = url if parsed.port else parsed._replace(
        netloc=f"{parsed.netloc}:{443 if parsed.scheme == 'https' else 80}").geturl()
    return (without, with_port)


def valid_twilio_signature(url, pairs, auth_token, header, settings_header=None,
                           shared_key_secret=""):
    """X-Twilio-Signature checked with the auth token and HMAC-SHA1, or, when Twilio sent
    X-Twilio-Webhooks-Signature-Settings, with the SharedKey secret and its algorithm."""
    secret = shared_key_secret if settings_header else auth_token
    algorithm = twilio_algorithm(settings_header)
    if not secret or not header or algorithm not in _TWILIO_HASHES:
        return False
    return any(hmac.compare_digest(twilio_signature(u, pairs, secret, algorithm), header)
               for u in _twilio_urls(url))


SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
}
# an event not named above is signed like a call's start
DEFAULT_SIGNED = ("caller_id", "called_did", "call_start")
# the events the call log folds in; any other correctly signed event is answered and ignored
ZADARMA_HANDLED = frozenset(SIGNED_FIELDS) - {"NOTIFY_IVR"}


def zadarma_signature(params, secret):
    fields = SIGNED_FIELDS.get(params.get("event"), DEFAULT_SIGNED)
    data = "".join(params.get(name, "") for name in fields)
    hex_digest = hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(hex_digest.encode()).decode()


def zadarma_api_authorization(key, secret, method, query):
    """Zadarma's API requests (e.g. GET /v1/pbx/record/request/): the header
    `Authorization: <key>:<base64 of the hex HMAC-SHA1 of method + query + md5(query)>`,
    the query's parameters sorted by name and URL-encoded."""
    data = method + query + hashlib.md5(query.encode()).hexdigest()
    hex_digest = hmac.new(secret.encode(), data.encode(), hashlib.sha1).hexdigest()
    return f"{key}:{base64.b64encode(hex_digest.encode()).decode()}"


def valid_zadarma_signature(params, secret, header):
    if not secret or not header or not params.get("event"):
        return False
    return hmac.compare_digest(zadarma_signature(params, secret), header)


# Click-to-call through the AMI connector (connectors/asterisk): telephony POSTs a JSON body
# to the connector, signed X-CRM-Signature: sha256=<hex HMAC-SHA256 of the body> with the
# originate secret (else the AMI secret: both sides know it); the body carries `at` (epoch
# seconds), refused when more than CONNECTOR_MAX_SKEW_S away, so a captured request cannot
# be replayed later.
CONNECTOR_SIGNATURE_HEADER = "X-CRM-Signature"
CONNECTOR_MAX_SKEW_S = 300
# the Originate headers the connector passes on (anything else in a request is refused)
CONNECTOR_ORIGINATE_FIELDS = ("Channel", "Context", "Exten", "Priority", "CallerID", "Timeout",
                              "Async", "Variable", "Account")


def connector_key(originate_secret, ami_secret):
    return originate_secret or ami_secret or ""


def connector_signature(body, key):
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def valid_connector_signature(body, key, header):
    if not key or not header:
        return False
    return hmac.compare_digest(connector_signature(body, key), header)
