from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "reports"


@api.route("/reports/sources", "GET", "Per lead source and period: leads, deals, won deals and "
           "amount, conversion, cost and cost per won deal", TAG,
           query=s.SourcesQuery, response=s.SourcesReport, permission="reports:sources")
def sources_report(body, params):
    return call("deals", "sources_report", params)
