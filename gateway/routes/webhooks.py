from contracts import notifications as s
from gateway.calls import call
from gateway.routes import api

TAG = "webhooks"
WRITE_ERRORS = (400, 403, 404, 413, 415, 422, 503, 504)


@api.route("/webhooks", "GET", "List webhook subscriptions", TAG, query=s.WebhookListQuery,
           response=s.WebhookPage, errors=(400, 403, 422, 503, 504), permission="webhooks:manage")
def list_webhooks(body, params):
    return call("notifications", "list_webhooks", params)


@api.route("/webhooks", "POST", "Subscribe a URL to event types. Deliveries are POSTs of "
           '{"event_id","type","occurred_at","data"} signed with X-CRM-Signature: '
           "sha256=<hex HMAC-SHA256 of the body>; the secret is returned only here", TAG,
           body=s.WebhookIn, response=s.WebhookCreated, status=201,
           errors=(400, 403, 413, 415, 422, 503, 504), permission="webhooks:manage")
def create_webhook(body, params):
    return call("notifications", "create_webhook", body)


@api.route("/webhooks/{webhook_id}", "GET", "Get a webhook subscription (never its secret)",
           TAG, response=s.WebhookOut, errors=(403, 404, 503, 504), permission="webhooks:manage")
def get_webhook(webhook_id, body, params):
    return call("notifications", "get_webhook", webhook_id)


@api.route("/webhooks/{webhook_id}", "PATCH", "Change url, events, description or active",
           TAG, body=s.WebhookIn, partial=True, response=s.WebhookOut, errors=WRITE_ERRORS,
           permission="webhooks:manage")
def update_webhook(webhook_id, body, params):
    return call("notifications", "update_webhook", webhook_id, body)


@api.route("/webhooks/{webhook_id}", "DELETE", "Delete a webhook subscription", TAG,
           response=s.WebhookOut, errors=(403, 404, 503, 504), permission="webhooks:manage")
def delete_webhook(webhook_id, body, params):
    return call("notifications", "delete_webhook", webhook_id)


@api.route("/webhooks/{webhook_id}/deliveries", "GET", "The delivery log of a webhook, "
           "newest first (?status=failed)", TAG, query=s.DeliveryQuery,
           response=s.DeliveryPage, errors=(400, 403, 404, 422, 503, 504),
           permission="webhooks:manage")
def list_deliveries(webhook_id, body, params):
    return call("notifications", "list_deliveries", webhook_id, params)


@api.route("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "POST",
           "Send a failed (or delivered) delivery again, with fresh attempts", TAG,
           response=s.DeliveryOut, errors=(403, 404, 409, 503, 504), permission="webhooks:manage")
def redeliver(webhook_id, delivery_id, body, params):
    return call("notifications", "redeliver", webhook_id, delivery_id)
