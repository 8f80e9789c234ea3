from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "targets"
WRITE_ERRORS = (400, 403, 404, 413, 415, 422, 503, 504)


@api.route("/targets", "GET", "List sales targets (per user or team and period)", TAG,
           query=s.TargetListQuery, response=s.TargetPage, permission="targets:read")
def list_targets(body, params):
    return call("deals", "list_targets", params)


@api.route("/targets", "POST", "Create a target: won deals count and/or won amount for a "
           "user or a team in a month (YYYY-MM) or quarter (YYYY-Qn)", TAG, body=s.TargetIn,
           response=s.TargetOut, status=201, errors=(400, 403, 413, 415, 422, 503, 504),
           permission="targets:write")
def create_target(body, params):
    return call("deals", "create_target", body)


@api.route("/targets/progress", "GET", "Plan, actual and percentage of each matching target "
           '("5 of 10 won")', TAG, query=s.ProgressQuery, response=s.ProgressList,
           permission="targets:read")
def target_progress(body, params):
    return call("deals", "target_progress", params)


@api.route("/targets/{target_id}", "GET", "Get a target", TAG, response=s.TargetOut,
           permission="targets:read")
def get_target(target_id, body, params):
    return call("deals", "get_target", target_id)


@api.route("/targets/{target_id}", "PATCH", "Change a target", TAG, body=s.TargetIn,
           partial=True, response=s.TargetOut, errors=WRITE_ERRORS, permission="targets:write")
def update_target(target_id, body, params):
    return call("deals", "update_target", target_id, body)


@api.route("/targets/{target_id}", "DELETE", "Delete a target", TAG, response=s.TargetOut,
           errors=(400, 403, 404, 503, 504), permission="targets:write")
def delete_target(target_id, body, params):
    return call("deals", "delete_target", target_id)
