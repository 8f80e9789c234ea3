"""Channels: each module sends one rendered delivery and says how it went.

`send(delivery, settings, http)` returns a short note on success and raises
`Retryable` (timeouts, connection errors, 5xx, 429: try again later with backoff) or
`Permanent` (4xx, bad address: retrying would never help, fail now with the reason)."""
import requests

from services.notifications.channels import email_smtp, sms_http, telegram, webhook


class DeliveryError(Exception):
    @property
    def reason(self):
        return str(self.args[0])[:500] if self.args else type(self).__name__


class Retryable(DeliveryError):
    pass


class Permanent(DeliveryError):
    pass


RETRYABLE_STATUS = {408, 425, 429}


def check_response(response, what):
    """An HTTP provider's answer as success, Retryable (5xx, 408/429) or Permanent (4xx)."""
    if 200 <= response.status_code < 300:
        return f"{what} {response.status_code}"
    text = f"{what} answered {response.status_code}: {response.text[:200]}"
    if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
        raise Retryable(text)
    raise Permanent(text)


def post(http, url, what, timeout, **kwargs):
    try:
        response = http.post(url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise Retryable(f"{what} timed out: {exc}")
    except requests.RequestException as exc:
        raise Retryable(f"{what} unreachable: {exc}")
    return check_response(response, what)


SENDERS = {"email": email_smtp.send, "sms": sms_http.send, "telegram": telegram.send,
           "webhook": webhook.send}
