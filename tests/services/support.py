"""Helpers of the service-level tests (fixtures are in conftest.py)."""
from datetime import timedelta

from nameko.testing.services import entrypoint_hook


def call(container, method, *args, context=None, **kwargs):
    """The entrypoint `method` of a running container called as an RPC would call it (one
    worker, its dependencies injected), with nameko context data `context` (the caller:
    user_id, user_role... as the gateway sends them; none = the service itself)."""
    with entrypoint_hook(container, method, context_data=context) as hook:
        return hook(*args, **kwargs)


def iso(when):
    return when.isoformat().replace("+00:00", "Z")


def missed_call(unique, contact_id, owner_id, started_at, call_id=None):
    """call_missed's data as telephony announces it."""
    call_id = call_id or f"call-{unique}"
    caller = {"raw": "+39 02 5550 1234", "e164": "+390255501234", "valid": True}
    line = {"raw": "+39 02 9876 5432", "e164": "+390298765432", "valid": True}
    return {"call": {"id": call_id, "provider": "pbx1", "call_id": call_id,
                     "direction": "inbound", "from": caller, "to": line,
                     "number": "+390255501234", "contact_id": contact_id, "owner_id": owner_id,
                     "agent_id": None, "state": "ended", "outcome": "no_answer",
                     "missed": True, "started_at": iso(started_at),
                     "ended_at": iso(started_at + timedelta(seconds=30))},
            "contact_id": contact_id, "agent_id": None, "owner_id": owner_id,
            "direction": "inbound", "from": "+390255501234", "to": "+390298765432",
            "summary": "Missed call from +390255501234", "ref": {"type": "call", "id": call_id},
            "agent_ids": []}
