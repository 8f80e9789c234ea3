"""The contacts service alone: its RPC entrypoints, the events it announces and another
service's event on a contact's timeline."""
import pytest
from nameko.testing.services import entrypoint_waiter

from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.messaging.rpc import RpcPool
from tests.services.support import call


@pytest.fixture
def contacts(start_service):
    from services.contacts.service import ContactsService
    container, _ = start_service(ContactsService)
    return container


def about(contact_id):
    return lambda e: (e["data"].get("contact") or {}).get("id") == contact_id \
        or e["data"].get("contact_id") == contact_id


def test_create_get_update_delete_and_their_events(contacts, record_events, platform, unique):
    events = record_events("contacts")
    created = call(contacts, "create_contact",
                   {"first_name": "Ada", "last_name": f"L{unique}",
                    "emails": [f"Ada.{unique}@Example.com"], "phones": ["+39 333 765 4321"],
                    "tags": ["vip", "vip", "b2b"]}, force=True)
    assert created["emails"] == [{"email": f"ada.{unique}@example.com", "type": "work"}]
    assert created["phones"][0]["e164"] == "+393337654321"
    assert created["tags"] == ["b2b", "vip"] and created["status"] == "lead"
    assert call(contacts, "get_contact", created["id"]) == created

    updated = call(contacts, "update_contact", created["id"], {"status": "customer"})
    assert updated["status"] == "customer" and updated["first_name"] == "Ada"
    call(contacts, "delete_contact", created["id"])
    with pytest.raises(NotFound):
        call(contacts, "get_contact", created["id"])
    assert call(contacts, "get_contact", created["id"], include_deleted=True)["deleted_at"]

    # each write announced one event, in order, in the common envelope
    assert events.wait_for(lambda e: e["type"] == "contact_deleted" and about(created["id"])(e))
    seen = [e for e in events.events if about(created["id"])(e)]
    assert [e["type"] for e in seen] == ["contact_created", "contact_updated", "contact_deleted"]
    assert seen[0]["data"]["contact"] == created
    assert seen[1]["data"]["changed"] == ["status"]
    assert {e["source"] for e in seen} == {"contacts"} and len({e["event_id"] for e in seen}) == 3
    # published, then forgotten
    assert platform.db("contacts")["outbox"].count_documents(
        {"_id": {"$in": [e["event_id"] for e in seen]}}) == 0


def test_a_duplicate_is_a_conflict_naming_the_existing_contact_and_announces_nothing(
        contacts, record_events, unique):
    events = record_events("contacts", "contact_created")
    email = f"bo.{unique}@example.com"
    first = call(contacts, "create_contact", {"first_name": "Bo", "emails": [email]})
    with pytest.raises(Conflict) as conflict:
        call(contacts, "create_contact", {"first_name": "Other", "emails": [email.upper()]})
    assert conflict.value.details == {"existing_ids": [first["id"]]}
    forced = call(contacts, "create_contact", {"first_name": "Forced", "emails": [email]},
                  force=True)
    assert forced["possible_duplicates"] == [first["id"]]
    # the refused create announced nothing: the forced one, published after it by the same
    # process, is the next event of that address
    assert events.wait_for(about(forced["id"]))
    assert [e["data"]["contact"]["first_name"] for e in events.events
            if e["data"]["contact"]["emails"][0]["email"] == email] == ["Bo", "Forced"]


def test_typed_errors_cross_the_real_rpc_boundary(contacts, platform, unique):
    """Through the broker as the gateway calls it: 409 and 422 arrive as their own types."""
    pool = RpcPool(platform.amqp_uri, size=1, timeout=10, name="svc-test")
    try:
        body = {"first_name": "Rpc", "emails": [f"rpc.{unique}@example.com"]}
        created = pool.call("contacts", "create_contact", body)
        with pytest.raises(Conflict) as conflict:
            pool.call("contacts", "create_contact", body)
        assert conflict.value.details == {"existing_ids": [created["id"]]}
        with pytest.raises(ValidationFailed) as invalid:
            pool.call("contacts", "create_contact", {"emails": ["not-an-email"]})
        assert "emails" in invalid.value.details["fields"]
        with pytest.raises(NotFound):
            pool.call("contacts", "get_contact", f"missing-{unique}")
    finally:
        pool.close()


def test_another_services_event_lands_on_the_timeline_once(contacts, publish, unique):
    contact = call(contacts, "create_contact", {"first_name": "Tim", "last_name": f"L{unique}"})
    data = {"call": {"id": f"call-{unique}"}, "contact_id": contact["id"],
            "summary": "Call answered, 3 min", "ref": {"type": "call", "id": f"call-{unique}"},
            "direction": "inbound", "contacted_at": "2030-01-02T10:00:00Z"}
    for _ in range(2):  # delivered twice: one entry
        with entrypoint_waiter(contacts, "on_telephony_call_ended"):
            publish("telephony", "call_ended", data, event_id=f"evt-{unique}")
    items = call(contacts, "timeline", contact["id"], {})["items"]
    assert sorted(e["kind"] for e in items) == ["call_ended", "contact_created"]
    entry = next(e for e in items if e["kind"] == "call_ended")
    assert entry["summary"] == "Call answered, 3 min"
    assert entry["ref"] == {"service": "telephony", "type": "call", "id": f"call-{unique}"}
    assert call(contacts, "get_contact", contact["id"])["last_contacted_at"] == "2030-01-02T10:00:00Z"
