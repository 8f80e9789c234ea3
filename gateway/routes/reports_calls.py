from contracts import telephony as s
from gateway.calls import call
from gateway.routes import api


@api.route("/reports/calls", "GET", "Calls, answered, missed and talk time per agent or day; "
           "missed calls not called back", "reports", query=s.CallsReportQuery,
           response=s.CallsReport, permission="reports:read")
def calls_report(body, params):
    return call("telephony", "calls_report", params)
