from contracts import contacts as s
from gateway.calls import call
from gateway.lists import from_index
from gateway.routes import api

TAG = "contacts"


@api.route("/contacts", "GET", "List contacts (keyset pages, filters, sort)", TAG,
           query=s.ContactListQuery, response=s.ContactPage, permission="contacts:read")
def list_contacts(body, params):
    return from_index("contact", "contacts", "list_contacts", params)


@api.route("/contacts", "POST", "Create a contact (409 if its email or phone exists, unless ?force=true)",
           TAG, body=s.ContactIn, query=s.CreateQuery, response=s.ContactOut, status=201,
           errors=(400, 409, 413, 415, 422, 503, 504), permission="contacts:write")
def create_contact(body, params):
    force = params.get("force", "").lower() in ("1", "true", "yes")
    return call("contacts", "create_contact", body, force)


@api.route("/contacts/lookup", "GET", "Find contacts by phone (any format) or email, via an index",
           TAG, query=s.LookupQuery, response=s.LookupResult, permission="contacts:read")
def lookup(body, params):
    return call("contacts", "lookup", params)


@api.route("/contacts/{contact_id}", "GET", "Get a contact", TAG, response=s.ContactOut,
           permission="contacts:read")
def get_contact(contact_id, body, params):
    return call("contacts", "get_contact", contact_id)


@api.route("/contacts/{contact_id}", "PATCH", "Change some fields of a contact", TAG,
           body=s.ContactIn, partial=True, response=s.ContactOut,
           errors=(400, 404, 413, 415, 422, 503, 504), permission="contacts:write")
def update_contact(contact_id, body, params):
    return call("contacts", "update_contact", contact_id, body)


@api.route("/contacts/{contact_id}", "DELETE", "Soft-delete a contact (restorable)", TAG,
           response=s.ContactOut, permission="contacts:write")
def delete_contact(contact_id, body, params):
    return call("contacts", "delete_contact", contact_id)


@api.route("/contacts/{contact_id}/restore", "POST", "Restore a deleted contact", TAG,
           response=s.ContactOut, permission="contacts:write")
def restore_contact(contact_id, body, params):
    return call("contacts", "restore_contact", contact_id)


@api.route("/contacts/{contact_id}/timeline", "GET", "Everything that happened with a contact, newest first",
           TAG, query=s.TimelineQuery, response=s.TimelinePage, permission="contacts:read")
def timeline(contact_id, body, params):
    return call("contacts", "timeline", contact_id, params)
