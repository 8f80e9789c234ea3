from contracts import tasks as s
from gateway.calls import call
from gateway.routes import api


@api.route("/reports/tasks", "GET",
           "Tasks per assignee (and period) or per period: open, done, overdue, on-time rate; range on due_at",
           "reports", query=s.TaskReportQuery, response=s.TaskReport, permission="reports:read")
def tasks_report(body, params):
    return call("tasks", "report", params)
