"""Outgoing webhooks: the stored JSON body, signed with the subscription's secret.

X-CRM-Signature is sha256=<hex HMAC-SHA256 of the raw body>; receivers recompute it over
the bytes they received. The target is checked again at send time (DNS may have changed)."""
import hashlib
import hmac

from services.notifications.urls import UnsafeUrl, check_url


def signature(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(delivery, settings, http):
    from services.notifications.channels import Permanent, post
    hook = delivery.get("webhook")
    if not hook or not hook.get("active"):
        raise Permanent("webhook deleted or disabled")
    try:
        check_url(hook["url"], settings)
    except UnsafeUrl as exc:
        raise Permanent(str(exc))
    body = delivery["body"].encode()
    headers = {"Content-Type": "application/json", "User-Agent": "crm-webhooks/1",
               "X-CRM-Signature": signature(hook["secret"], body),
               "X-CRM-Event": delivery["event_type"], "X-CRM-Delivery": delivery["_id"]}
    return post(http, hook["url"], "receiver", settings.send_timeout_s, data=body,
                headers=headers)
