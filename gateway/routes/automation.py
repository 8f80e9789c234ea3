from contracts import automation as s
from gateway.calls import call
from gateway.routes import api

TAG = "automation"
SEGMENTS = "segments"
CAMPAIGNS = "campaigns"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)
COUNT_TIMEOUT = 30


@api.route("/automation/rules", "GET", "Automation rules (admins: all; managers: their team's)",
           TAG, query=s.RuleListQuery, response=s.RulePage, permission="automation:read")
def list_rules(body, params):
    return call("automation", "list_rules", params)


@api.route("/automation/rules", "POST",
           "Add a rule: a trigger (an event by contract, or time: in_stage, no_contact, "
           "date_field), conditions, actions in order, an optional delay; checked at save",
           TAG, body=s.RuleIn, response=s.RuleOut, status=201, errors=WRITE_ERRORS,
           permission="automation:write")
def create_rule(body, params):
    return call("automation", "create_rule", body)


@api.route("/automation/rules/{rule_id}", "GET", "Get a rule", TAG, response=s.RuleOut,
           permission="automation:read")
def get_rule(rule_id, body, params):
    return call("automation", "get_rule", rule_id)


@api.route("/automation/rules/{rule_id}", "PATCH", "Change, enable or disable a rule", TAG,
           body=s.RuleIn, partial=True, response=s.RuleOut, errors=WRITE_ERRORS,
           permission="automation:write")
def update_rule(rule_id, body, params):
    return call("automation", "update_rule", rule_id, body)


@api.route("/automation/rules/{rule_id}", "DELETE", "Delete a rule", TAG, response=s.RuleOut,
           permission="automation:write")
def delete_rule(rule_id, body, params):
    return call("automation", "delete_rule", rule_id)


@api.route("/automation/rules/{rule_id}/dry-run", "POST",
           "Which records the rule would have hit over the last days (30 at most), and why "
           "not for the others; nothing is done", TAG, body=s.DryRunIn, response=s.DryRunOut,
           errors=WRITE_ERRORS, permission="automation:read")
def dry_run(rule_id, body, params):
    return call("automation", "dry_run", rule_id, body)


@api.route("/automation/rules/{rule_id}/runs", "GET",
           "A rule's run log: fired, skipped (which condition failed), stopped, what each "
           "action did", TAG, query=s.RunListQuery, response=s.RunPage,
           permission="automation:read")
def rule_runs(rule_id, body, params):
    return call("automation", "list_runs", rule_id, params)


@api.route("/automation/runs", "GET", "The run log of one record (record_type, record_id)",
           TAG, query=s.RunListQuery, response=s.RunPage, permission="automation:read")
def record_runs(body, params):
    return call("automation", "list_runs", None, params)


@api.route("/automation/triggers", "GET",
           "The events a rule may trigger on, with the fields its conditions may name",
           TAG, response=s.TriggerList, permission="automation:read")
def triggers(body, params):
    return call("automation", "list_triggers")


@api.route("/segments", "GET", "Saved contact segments", SEGMENTS, query=s.RuleListQuery,
           response=s.SegmentPage, permission="automation:read")
def list_segments(body, params):
    return call("automation", "list_segments", params)


@api.route("/segments", "POST", "Save a segment: filters of the contacts list", SEGMENTS,
           body=s.SegmentIn, response=s.SegmentOut, status=201, errors=WRITE_ERRORS,
           permission="automation:write")
def create_segment(body, params):
    return call("automation", "create_segment", body)


@api.route("/segments/{segment_id}", "GET", "Get a segment", SEGMENTS, response=s.SegmentOut,
           permission="automation:read")
def get_segment(segment_id, body, params):
    return call("automation", "get_segment", segment_id)


@api.route("/segments/{segment_id}", "DELETE", "Delete a segment", SEGMENTS,
           response=s.SegmentOut, permission="automation:write")
def delete_segment(segment_id, body, params):
    return call("automation", "delete_segment", segment_id)


@api.route("/segments/{segment_id}/count", "GET", "How many contacts the segment matches now",
           SEGMENTS, response=s.SegmentCount, permission="automation:read")
def count_segment(segment_id, body, params):
    # counting a large segment reads much of the contacts (automation waits 25 s for it)
    return call("automation", "count_segment", segment_id, timeout=COUNT_TIMEOUT)


@api.route("/campaigns", "GET", "Campaigns", CAMPAIGNS, query=s.RuleListQuery,
           response=s.CampaignPage, permission="automation:read")
def list_campaigns(body, params):
    return call("automation", "list_campaigns", params)


@api.route("/campaigns", "POST", "A draft campaign: a template for a segment and channel",
           CAMPAIGNS, body=s.CampaignIn, response=s.CampaignOut, status=201,
           errors=WRITE_ERRORS, permission="automation:write")
def create_campaign(body, params):
    return call("automation", "create_campaign", body)


@api.route("/campaigns/{campaign_id}", "GET", "A campaign with its counts", CAMPAIGNS,
           response=s.CampaignOut, permission="automation:read")
def get_campaign(campaign_id, body, params):
    return call("automation", "get_campaign", campaign_id)


@api.route("/campaigns/{campaign_id}/send", "POST", "Send a draft now or at send_at",
           CAMPAIGNS, body=s.CampaignSendIn, response=s.CampaignOut, errors=WRITE_ERRORS,
           permission="automation:write")
def send_campaign(campaign_id, body, params):
    return call("automation", "send_campaign", campaign_id, body)


@api.route("/u/{token}", "GET", "Unsubscribe link of a marketing message (no sign-in); "
           "honoured at once", CAMPAIGNS, response=s.UnsubscribeOut, public=True,
           errors=(400, 429, 503, 504), permission="public")
def unsubscribe(token, body, params):
    return call("automation", "unsubscribe", token)
