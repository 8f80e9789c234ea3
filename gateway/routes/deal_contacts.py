"""Several contacts on a deal, each with a role; the deals a contact takes part in."""
from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "deals"


@api.route("/deals/{deal_id}/contacts", "GET", "The people on a deal with their role; one is primary",
           TAG, response=s.DealContactsOut, permission="deals:read")
def get_deal_contacts(deal_id, body, params):
    return call("deals", "get_deal_contacts", deal_id)


@api.route("/deals/{deal_id}/contacts", "PUT",
           "Replace the people on a deal (each once, a role each, exactly one primary: it becomes contact_id)",
           TAG, body=s.DealContactsIn, response=s.DealContactsOut,
           errors=(400, 404, 409, 413, 415, 422, 503, 504), permission="deals:write")
def set_deal_contacts(deal_id, body, params):
    return call("deals", "set_deal_contacts", deal_id, body)


@api.route("/contacts/{contact_id}/deals", "GET",
           "The deals a contact takes part in (primary or with a role), within the caller's deals",
           TAG, query=s.ContactDealsQuery, response=s.ContactDeals, permission="deals:read")
def contact_deals(contact_id, body, params):
    return call("deals", "deals_of_contact", contact_id, params)
