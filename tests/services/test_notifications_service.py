"""The notifications service alone: an event becomes an inbox entry for the right person,
once; the people's copy of users and their preferences decide who gets nothing. The
contacts service's answers are stood in for (replace_dependencies)."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import entrypoint_waiter

from crm_common.errors import NotFound
from tests.services.support import call, missed_call


@pytest.fixture
def notifications(start_service):
    from services.notifications.service import NotificationsService
    container, _ = start_service(NotificationsService, "contacts_rpc")
    return container


def missed(unique, owner_id):
    return missed_call(unique, f"c-{unique}", owner_id,
                       datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1))


def inbox(container, user_id):
    return call(container, "list_notifications", {"user_id": user_id})["items"]


def test_a_missed_call_reaches_the_owners_inbox_once(notifications, publish, unique):
    owner = f"owner-{unique}"
    for _ in range(2):  # delivered twice: one entry
        with entrypoint_waiter(notifications, "on_telephony_events"):
            publish("telephony", "call_missed", missed(unique, owner), event_id=f"evt-{unique}")
    [entry] = inbox(notifications, owner)
    assert entry["type"] == "call_missed" and entry["event_id"] == f"evt-{unique}"
    assert entry["title"] == "Missed call from +390255501234"
    assert entry["urgent"] is True and entry["read_at"] is None
    assert entry["ref"] == {"type": "call", "id": f"call-{unique}"}

    # the owner reads it; nobody else can
    me = {"user_id": owner, "user_role": "agent"}
    assert call(notifications, "unread_count", {}, context=me) == {"unread": 1}
    with pytest.raises(NotFound):
        call(notifications, "mark_read", entry["id"], {}, context={"user_id": "someone-else",
                                                                  "user_role": "agent"})
    assert call(notifications, "mark_read", entry["id"], {}, context=me)["read_at"]
    assert call(notifications, "unread_count", {}, context=me) == {"unread": 0}


def test_an_inactive_user_and_a_muted_event_get_nothing(notifications, publish, unique):
    gone, muted = f"gone-{unique}", f"muted-{unique}"
    with entrypoint_waiter(notifications, "on_user_upserted"):
        publish("gateway", "user_upserted", {"user": {
            "id": gone, "email": f"{gone}@crm.test", "name": "Gone", "role": "agent",
            "active": False}})
    prefs = call(notifications, "set_preferences", {"channels": {"call_missed": []}},
                 {"user_id": muted})
    assert prefs["channels"]["call_missed"] == []
    for user_id in (gone, muted):
        # handled (the waiter returns when the handler's worker is done): nothing for them
        with entrypoint_waiter(notifications, "on_telephony_events") as handled:
            publish("telephony", "call_missed", missed(unique, user_id))
        assert handled.get() is None
        assert inbox(notifications, user_id) == []
