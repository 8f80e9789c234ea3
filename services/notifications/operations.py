"""What the API of the notifications service does: inbox, preferences, webhook
subscriptions and their delivery log. Writes return (result, events) like every service."""
import secrets

from marshmallow import fields

from crm_common.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.timeutil import utcnow
from crm_common.validation import load
from contracts import notifications as schemas
from services.notifications.fanout import preferences_with_defaults
from services.notifications.urls import UnsafeUrl, check_url

inbox_query = schemas.InboxQuery()
user_query = schemas.UserQuery()
preferences_in = schemas.PreferencesIn()
preferences_out = schemas.PreferencesOut()
notification_out = schemas.NotificationOut()
webhook_in = schemas.WebhookIn()
webhook_out = schemas.WebhookOut()
webhook_created = schemas.WebhookCreated()
webhook_list_query = schemas.WebhookListQuery()
delivery_out = schemas.DeliveryOut()
delivery_query = schemas.DeliveryQuery()


def _dump(schema, doc):
    out = schema.dump(doc)
    for name, field in schema.fields.items():
        out.setdefault(name, [] if isinstance(field, fields.List) else None)
    out["id"] = doc["_id"]
    return out


class Notifications:
    def __init__(self, store, caller, notify_settings, now=utcnow):
        self.store = store
        self.caller = caller
        self.settings = notify_settings
        self.now = now

    # whose inbox: the caller's own; an admin (or a service) may name another user
    def _user(self, params):
        wanted = (params or {}).get("user_id")
        if wanted and wanted != self.caller.user_id:
            if self.caller.role not in (None, "admin"):
                raise Forbidden("Only admins act on another user's notifications")
            return wanted
        if not self.caller.user_id:
            raise BadRequest("No user: sign in, or name user_id as an admin", {})
        return self.caller.user_id

    def own_user(self, params):
        """The user a request is about: the caller, or (an admin) `user_id`."""
        return self._user(load(user_query, params))

    # inbox
    def list(self, params):
        query = load(inbox_query, params)
        user_id = self._user(query)
        docs, next_cursor = self.store.page_inbox(user_id, query["unread"], query["limit"],
                                                  query.get("cursor"))
        out = {"items": [_dump(notification_out, d) for d in docs], "next_cursor": next_cursor}
        if query["include_total"]:
            out["total"] = self.store.count_inbox(user_id, query["unread"])
        return out

    def unread_count(self, params):
        user_id = self._user(load(user_query, params))
        return {"unread": self.store.count_inbox(user_id, unread=True)}

    def mark_read(self, notification_id, params):
        user_id = self._user(load(user_query, params))
        doc = self.store.mark_read(user_id, notification_id, self.now())
        if not doc:
            raise NotFound("Notification not found", {"id": notification_id})
        return _dump(notification_out, doc)

    def mark_all_read(self, params):
        user_id = self._user(load(user_query, params))
        return {"marked": self.store.mark_all_read(user_id, self.now())}

    # preferences
    def get_preferences(self, params):
        user_id = self._user(load(user_query, params))
        return preferences_out.dump(
            preferences_with_defaults(user_id, self.store.get_preferences(user_id)))

    def set_preferences(self, payload, params):
        user_id = self._user(load(user_query, params))
        data = load(preferences_in, payload, partial=True)
        changes = {k: v for k, v in data.items() if k != "channels"}
        for kind, channels in (data.get("channels") or {}).items():
            changes[f"channels.{kind}"] = sorted(set(channels), key=channels.index)
        changes["updated_at"] = self.now()
        doc = self.store.set_preferences(user_id, changes)
        return preferences_out.dump(preferences_with_defaults(user_id, doc))

    # webhooks (integration settings: admins only)
    def _admin(self):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins manage webhooks")

    def _safe_url(self, url):
        try:
            check_url(url, self.settings)
        except UnsafeUrl as exc:
            raise ValidationFailed("Invalid input", {"fields": {"url": [str(exc)]}})

    def create_webhook(self, payload):
        self._admin()
        data = load(webhook_in, payload)
        self._safe_url(data["url"])
        now = self.now()
        doc = {"url": data["url"], "events": sorted(set(data["events"])),
               "description": data.get("description"), "active": data.get("active", True),
               "secret": data.get("secret") or secrets.token_urlsafe(32),
               "created_at": now, "updated_at": now, "deleted_at": None,
               "created_by": self.caller.user_id}
        self.store.insert_webhook(doc)
        return _dump(webhook_created, doc), []

    def get_webhook(self, webhook_id):
        self._admin()
        return _dump(webhook_out, self._hook(webhook_id))

    def update_webhook(self, webhook_id, payload):
        self._admin()
        data = load(webhook_in, payload, partial=True)
        if "secret" in data:
            raise ValidationFailed("Invalid input", {"fields": {"secret": [
                "The secret cannot be changed; create a new webhook to rotate it."]}})
        self._hook(webhook_id)
        if "url" in data:
            self._safe_url(data["url"])
        if "events" in data:
            data["events"] = sorted(set(data["events"]))
        data["updated_at"] = self.now()
        doc = self.store.update_webhook(webhook_id, data)
        if not doc:
            raise NotFound("Webhook not found", {"id": webhook_id})
        return _dump(webhook_out, doc), []

    def delete_webhook(self, webhook_id):
        self._admin()
        self._hook(webhook_id)
        now = self.now()
        doc = self.store.update_webhook(webhook_id, {"deleted_at": now, "active": False,
                                                     "updated_at": now})
        return _dump(webhook_out, doc), []

    def list_webhooks(self, params):
        self._admin()
        query = load(webhook_list_query, params)
        docs, next_cursor = self.store.page_webhooks(query["limit"], query.get("cursor"))
        return {"items": [_dump(webhook_out, d) for d in docs], "next_cursor": next_cursor}

    def list_deliveries(self, webhook_id, params):
        self._admin()
        query = load(delivery_query, params)
        self._hook(webhook_id)
        docs, next_cursor = self.store.page_deliveries(webhook_id, query.get("status"),
                                                       query["limit"], query.get("cursor"))
        return {"items": [_dump(delivery_out, d) for d in docs], "next_cursor": next_cursor}

    def redeliver(self, webhook_id, delivery_id):
        self._admin()
        self._hook(webhook_id)
        doc = self.store.requeue(delivery_id, webhook_id, self.now())
        if not doc:
            current = self.store.get_delivery(delivery_id)
            if not current or current.get("webhook_id") != webhook_id:
                raise NotFound("Delivery not found", {"id": delivery_id})
            raise Conflict("Only a delivered or failed delivery can be redelivered",
                           {"status": current["status"]})
        return _dump(delivery_out, doc), []

    def _hook(self, webhook_id):
        doc = self.store.get_webhook(webhook_id)
        if not doc:
            raise NotFound("Webhook not found", {"id": webhook_id})
        return doc
