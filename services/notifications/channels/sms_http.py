"""SMS through an HTTP provider: URL, auth and body template come from configuration."""
from services.notifications.templates_engine import render_string


def _auth(settings):
    if not settings.sms_auth:
        return {}, None
    if settings.sms_auth.lower().startswith("bearer "):
        return {"Authorization": settings.sms_auth}, None
    user, _, password = settings.sms_auth.partition(":")
    return {}, (user, password)


def send(delivery, settings, http):
    from services.notifications.channels import Permanent, post
    if not settings.sms_url:
        raise Permanent("no SMS provider configured (CRM_SMS_URL)")
    to = delivery.get("target")
    if not to or not to.startswith("+"):
        raise Permanent(f"no usable phone number: {to!r}")
    headers, auth = _auth(settings)
    headers["Content-Type"] = settings.sms_content_type
    body = render_string(settings.sms_body, to=to, text=delivery["short"])
    return post(http, settings.sms_url, "SMS provider", settings.send_timeout_s,
                data=body.encode(), headers=headers, auth=auth)
