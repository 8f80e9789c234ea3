from contracts import telephony as s
from gateway.calls import call
from gateway.routes import api

TAG = "calls"


@api.route("/calls", "GET", "The call log (keyset pages; filters contact, agent, direction, "
           "outcome, missed, called_back, phone, from/to = started between)", TAG,
           query=s.CallListQuery, response=s.CallPage, permission="calls:read")
def list_calls(body, params):
    return call("telephony", "list_calls", params)


@api.route("/calls", "POST", "Click-to-call: ring the agent's phone, then dial `to`, through "
           "the configured PBX adapter (Asterisk AMI or an HTTP callback URL). 503 with the "
           "reason (nothing recorded) when no PBX is configured or it refused the request; "
           "409 for a do_not_contact contact unless `override_reason` is sent", TAG,
           body=s.ClickToCallIn, response=s.CallOut, status=201,
           errors=(400, 409, 413, 415, 422, 503, 504), permission="calls:originate")
def click_to_call(body, params):
    return call("telephony", "click_to_call", body)


@api.route("/calls/{call_id}", "GET", "One call with its legs", TAG, response=s.CallOut,
           permission="calls:read")
def get_call(call_id, body, params):
    return call("telephony", "get_call", call_id)
