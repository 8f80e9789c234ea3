from contracts import deals as s
from gateway.calls import call
from gateway.lists import from_index
from gateway.routes import api

TAG = "deals"
WRITE_ERRORS = (400, 404, 409, 413, 415, 422, 503, 504)


@api.route("/deals", "GET", "List deals (keyset pages, filters, sort)", TAG,
           query=s.DealListQuery, response=s.DealPage, permission="deals:read")
def list_deals(body, params):
    return from_index("deal", "deals", "list_deals", params)


@api.route("/deals", "POST", "Create a deal (flags possible_duplicates: an open deal of the "
           "same contact in the same pipeline)", TAG, body=s.DealIn, response=s.DealOut,
           status=201, errors=(400, 413, 415, 422, 503, 504), permission="deals:write")
def create_deal(body, params):
    return call("deals", "create_deal", body)


@api.route("/deals/{deal_id}", "GET", "Get a deal", TAG, response=s.DealOut,
           permission="deals:read")
def get_deal(deal_id, body, params):
    return call("deals", "get_deal", deal_id)


@api.route("/deals/{deal_id}", "PATCH", "Change some fields of a deal (the stage: /move)", TAG,
           body=s.DealPatch, partial=True, response=s.DealOut, errors=WRITE_ERRORS,
           permission="deals:write")
def update_deal(deal_id, body, params):
    return call("deals", "update_deal", deal_id, body)


@api.route("/deals/{deal_id}", "DELETE", "Delete a deal", TAG, response=s.DealOut,
           permission="deals:write")
def delete_deal(deal_id, body, params):
    return call("deals", "delete_deal", deal_id)


@api.route("/deals/{deal_id}/restore", "POST", "Restore a deleted deal as it was (a deal not "
           "deleted is answered unchanged)", TAG, response=s.DealOut, permission="deals:write")
def restore_deal(deal_id, body, params):
    return call("deals", "restore_deal", deal_id)


@api.route("/deals/{deal_id}/move", "POST", "Move a deal to a stage of its pipeline (a lost "
           "stage needs lost_reason); recorded in its history", TAG, body=s.MoveIn,
           response=s.DealOut, errors=WRITE_ERRORS, permission="deals:write")
def move_deal(deal_id, body, params):
    return call("deals", "move_deal", deal_id, body)


@api.route("/deals/{deal_id}/history", "GET", "Stage moves of a deal, newest first", TAG,
           query=s.HistoryQuery, response=s.HistoryPage, permission="deals:read")
def deal_history(deal_id, body, params):
    return call("deals", "deal_history", deal_id, params)


@api.route("/deal-settings", "GET", "The configurable lead sources and lost reasons", TAG,
           response=s.DealSettingsOut, permission="deal-settings:read")
def get_deal_settings(body, params):
    return call("deals", "get_settings")


@api.route("/deal-settings", "PATCH", "Replace the lead sources and/or lost reasons (manager, admin)",
           TAG, body=s.DealSettings, partial=True, response=s.DealSettingsOut,
           errors=(400, 403, 413, 415, 422, 503, 504), permission="deal-settings:write")
def update_deal_settings(body, params):
    return call("deals", "update_settings", body)
