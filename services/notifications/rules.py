"""Who gets what: the default routing of each event to people, urgency and channels.

Every rule takes the event's data and a `users` lookup (the service's copy of gateway users)
and returns the user ids to notify; preferences then choose the channels per user."""
from contracts.notifications import (CHANNELS, DEFAULT_CHANNELS, PERSON_CHANNELS,  # noqa: F401
                                     PERSON_EVENTS, WEBHOOK_EVENT_TYPES, WEBHOOK_EVENTS)


# Urgent messages ignore quiet hours; the rest wait until the window ends.
URGENT = {"task_escalated", "call_missed", "conversation_escalated"}


def _manager_of(user_id, users):
    user = users(user_id) if user_id else None
    return user.get("manager_id") if user else None


def recipients(event_type, data, users):
    if event_type in ("task_assigned", "task_due_soon", "task_overdue"):
        ids = [data["assignee_id"]]
    elif event_type == "task_escalated":
        ids = [data.get("manager_id") or _manager_of(data["assignee_id"], users)]
    elif event_type == "conversation_escalated":
        ids = [data.get("manager_id") or _manager_of(data.get("user_id"), users)]
    elif event_type == "call_missed":
        # the contact's owner follows up; with no known contact, the agent who was called
        ids = [data.get("owner_id") or data.get("agent_id")]
    elif event_type in ("deal_won", "deal_lost"):
        owner = data["owner_id"]
        ids = [owner, _manager_of(owner, users)]
    elif event_type in ("deal_assigned", "lead_routed", "invoice_overdue"):
        ids = [data["owner_id"]]
    elif event_type == "rule_notice":  # an automation rule's notify_user action
        ids = [data["user_id"]]
    elif event_type == "import_finished":
        ids = [data["started_by"]]
    elif event_type == "note_mentioned":
        ids = list(data["mentioned_ids"])
    else:
        ids = []
    seen, out = set(), []
    for user_id in ids:
        if user_id and user_id not in seen:
            seen.add(user_id)
            out.append(user_id)
    return out


HANDLED_EVENTS = {}  # source -> the event types this service listens to
for _source, _type in sorted(PERSON_EVENTS | WEBHOOK_EVENTS):
    HANDLED_EVENTS.setdefault(_source, set()).add(_type)
# source -> the types its queue is always bound to (a person may be told); the others only
# once an active webhook subscribes to them (webhook_type_keys)
ALWAYS_BOUND = {}
for _source, _type in sorted(PERSON_EVENTS):
    ALWAYS_BOUND.setdefault(_source, set()).add(_type)
del _source, _type


def webhook_type_keys(event_types):
    """The `source.type` queue bindings the webhooks' subscribed types need."""
    return {f"{source}.{kind}" for source, kind in WEBHOOK_EVENTS if kind in set(event_types)}
