"""In-app inbox: the notification is a document in the user's inbox, written when the event
is handled (one per event and user, by a unique key), so nothing is "sent" later."""


def inbox_entry(event, user_id, rendered, urgent):
    return {"key": f"{event['event_id']}:{user_id}", "user_id": user_id,
            "event_id": event["event_id"], "type": rendered["kind"],
            "title": rendered["short"], "body": rendered["text"],
            "ref": event["data"].get("ref"), "urgent": urgent, "read_at": None}
