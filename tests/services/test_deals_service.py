"""The deals service alone: pipelines and deals over its entrypoints, stage moves with
their won/lost events, the contacts service's answers stood in for (replace_dependencies),
and the contacts service's merge event consumed."""
import pytest
from nameko.testing.services import entrypoint_waiter

from crm_common.errors import NotFound, ValidationFailed
from tests.services.support import call


@pytest.fixture
def deals(start_service):
    from services.deals.service import DealsService
    container, mocks = start_service(DealsService, "contacts_rpc")
    container.contacts_rpc = mocks["contacts_rpc"]
    return container


def pipeline(container, unique):
    made = call(container, "create_pipeline", {"name": f"Shop {unique}", "stages": [
        {"name": "New", "probability": 10}, {"name": "Offer", "probability": 50},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]})
    return made, {s["name"]: s["id"] for s in made["stages"]}


def deal_events(recorder, deal_id):
    return [e for e in recorder.events if e["data"]["deal"]["id"] == deal_id]


def test_stage_moves_announce_changes_and_the_win(deals, record_events, unique):
    events = record_events("deals")
    made, stages = pipeline(deals, unique)
    deal = call(deals, "create_deal", {"title": "Shoes", "amount": 120000, "currency": "EUR",
                                       "pipeline_id": made["id"], "contact_id": f"c-{unique}"})
    assert deal["stage_id"] == stages["New"] and deal["status"] == "open"
    # the contact was checked with the contacts service (stood in for here)
    deals.contacts_rpc.get_contact.assert_called_once_with(f"c-{unique}")

    moved = call(deals, "move_deal", deal["id"], {"stage_id": stages["Offer"]})
    assert moved["probability"] == 50 and moved["status"] == "open"
    won = call(deals, "move_deal", deal["id"], {"stage_id": stages["Won"]})
    assert won["status"] == "won" and won["closed_at"]
    # a move to where the deal is changes nothing and announces nothing
    assert call(deals, "move_deal", deal["id"], {"stage_id": stages["Won"]})["version"] == won["version"]

    assert events.wait_for(lambda e: e["type"] == "deal_won" and e["data"]["deal"]["id"] == deal["id"])
    mine = deal_events(events, deal["id"])
    assert [e["type"] for e in mine] == ["deal_created", "deal_stage_changed",
                                         "deal_stage_changed", "deal_won"]
    changes = [(e["data"]["from_stage_id"], e["data"]["to_stage_id"]) for e in mine[1:3]]
    assert changes == [(stages["New"], stages["Offer"]), (stages["Offer"], stages["Won"])]
    assert mine[3]["data"]["amount"] == 120000 and mine[3]["data"]["currency"] == "EUR"
    assert mine[3]["data"]["contact_id"] == f"c-{unique}"
    history = call(deals, "deal_history", deal["id"], {})["items"]
    assert sorted(h["to_kind"] for h in history) == ["open", "open", "won"]


def test_a_loss_needs_a_configured_reason(deals, record_events, unique):
    events = record_events("deals", "deal_lost")
    made, stages = pipeline(deals, unique)
    deal = call(deals, "create_deal", {"title": "Boots", "amount": 5000, "currency": "EUR",
                                       "pipeline_id": made["id"]})
    for bad in ({}, {"lost_reason": "aliens"}):
        with pytest.raises(ValidationFailed) as invalid:
            call(deals, "move_deal", deal["id"], {"stage_id": stages["Lost"], **bad})
        assert "lost_reason" in invalid.value.details["fields"]
    lost = call(deals, "move_deal", deal["id"], {"stage_id": stages["Lost"],
                                                 "lost_reason": "price", "lost_note": "too dear"})
    assert lost["status"] == "lost" and lost["lost_reason"] == "price"
    # the refused moves announced nothing: the loss, announced after them, is the only one
    assert events.wait_for(lambda e: e["data"]["deal"]["id"] == deal["id"])
    [event] = deal_events(events, deal["id"])
    assert event["data"]["lost_reason"] == "price" and event["data"]["amount"] == 5000


def test_an_unknown_contact_is_refused_as_the_contacts_service_says(deals, unique):
    deals.contacts_rpc.get_contact.side_effect = NotFound("Contact not found", {"id": "x"})
    with pytest.raises(ValidationFailed) as invalid:
        call(deals, "create_deal", {"title": "Ghost", "currency": "EUR",
                                    "contact_id": f"ghost-{unique}"})
    assert invalid.value.details["fields"] == {"contact_id": ["Unknown contact."]}


def test_a_contact_merge_moves_the_deals_to_the_survivor(deals, publish, unique):
    made, _ = pipeline(deals, unique)
    merged_id, survivor_id = f"m-{unique}", f"s-{unique}"
    deal = call(deals, "create_deal", {"title": "Merged", "currency": "EUR",
                                       "pipeline_id": made["id"], "contact_id": merged_id})
    with entrypoint_waiter(deals, "on_contact_merged"):
        publish("contacts", "contact_merged", {"survivor_id": survivor_id,
                                               "merged_ids": [merged_id]})
    assert call(deals, "get_deal", deal["id"])["contact_id"] == survivor_id
    assert call(deals, "list_deals", {"contact_id": merged_id})["items"] == []
