"""In-app inbox: the notification is a document in the user's inbox, written when the event
is handled (one per event and user, by a unique key), so nothing is "sent" later."""
from crm_common.timeutil import to_iso


def inbox_entry(event, user_id, rendered, urgent):
    return {"key": f"{event['event_id']}:{user_id}", "user_id": user_id,
            "event_id": event["event_id"], "type": rendered["kind"],
            "title": rendered["short"], "body": rendered["text"],
            "ref": event["data"].get("ref"), "urgent": urgent, "read_at": None}


def inbox_created(entry):
    """The notification_created event of a stored entry (the live stream shows it)."""
    out = {"id": entry.get("_id"), "user_id": entry["user_id"], "type": entry["type"],
           "title": entry["title"], "body": entry["body"], "ref": entry.get("ref"),
           "event_id": entry["event_id"], "urgent": entry["urgent"], "read_at": None,
           "created_at": to_iso(entry["created_at"])}
    return {"user_id": entry["user_id"], "notification": out, "urgent": entry["urgent"],
            "created_at": out["created_at"]}
