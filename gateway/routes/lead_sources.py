from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "lead-sources"
WRITE_ERRORS = (400, 403, 404, 413, 415, 422, 503, 504)


@api.route("/lead-sources", "GET", "List the lead sources with their monthly costs (by name)",
           TAG, query=s.LeadSourceListQuery, response=s.LeadSourcePage,
           permission="lead-sources:read")
def list_lead_sources(body, params):
    return call("deals", "list_lead_sources", params)


@api.route("/lead-sources", "POST", "Register a lead source with optional monthly costs "
           "(manager, admin); active sources are the /deal-settings lead_sources", TAG,
           body=s.LeadSourceIn, response=s.LeadSourceOut, status=201,
           errors=(400, 403, 409, 413, 415, 422, 503, 504), permission="lead-sources:write")
def create_lead_source(body, params):
    return call("deals", "create_lead_source", body)


@api.route("/lead-sources/{source_id}", "GET", "Get a lead source", TAG, response=s.LeadSourceOut,
           permission="lead-sources:read")
def get_lead_source(source_id, body, params):
    return call("deals", "get_lead_source", source_id)


@api.route("/lead-sources/{source_id}", "PATCH", "Change a lead source's description, costs "
           "(the whole list) or active flag (manager, admin)", TAG, body=s.LeadSourcePatch,
           response=s.LeadSourceOut, errors=WRITE_ERRORS, permission="lead-sources:write")
def update_lead_source(source_id, body, params):
    return call("deals", "update_lead_source", source_id, body)


@api.route("/lead-sources/{source_id}", "DELETE", "Delete a lead source and its costs (deals "
           "keep their source; manager, admin)", TAG, response=s.LeadSourceOut,
           errors=(400, 403, 404, 503, 504), permission="lead-sources:write")
def delete_lead_source(source_id, body, params):
    return call("deals", "delete_lead_source", source_id)
