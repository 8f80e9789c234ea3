from flask import g

from crm_common.errors import CrmError, NotFound, ValidationFailed
from contracts import tasks as s
from gateway.calls import call
from gateway.lists import from_index
from gateway.routes import api

TAG = "tasks"
WRITE_ERRORS = (400, 404, 409, 413, 415, 422, 503, 504)
# open deals looked at for the agenda's "no next step" list (the deals service pages them)
AGENDA_DEALS_LIMIT = 500


def _check_contact(body):
    """An unknown contact or deal, or one the caller cannot see, is bad input (422), asked
    of the service that owns them (with the caller's visibility)."""
    for field, service, method, what in (("contact_id", "contacts", "get_contact", "contact"),
                                         ("deal_id", "deals", "get_deal", "deal")):
        record_id = (body or {}).get(field)
        if not record_id:
            continue
        try:
            call(service, method, record_id)
        except NotFound:
            raise ValidationFailed("Invalid input", {"fields": {field: [f"Unknown {what}."]}})


@api.route("/tasks", "GET", "List tasks (keyset pages; filters; sort=due_at|-due_at|created_at|-created_at)",
           TAG, query=s.TaskListQuery, response=s.TaskPage, permission="tasks:read")
def list_tasks(body, params):
    return from_index("task", "tasks", "list_tasks", params)


@api.route("/tasks", "POST", "Create a task (assigning it to someone else notifies them)", TAG,
           body=s.TaskIn, response=s.TaskOut, status=201, errors=WRITE_ERRORS,
           permission="tasks:write")
def create_task(body, params):
    _check_contact(body)
    return call("tasks", "create_task", body)


@api.route("/tasks/{task_id}", "GET", "Get a task", TAG, response=s.TaskOut,
           permission="tasks:read")
def get_task(task_id, body, params):
    return call("tasks", "get_task", task_id)


@api.route("/tasks/{task_id}", "PATCH", "Change some fields of an open task (moving due_at re-arms its reminders)",
           TAG, body=s.TaskIn, partial=True, response=s.TaskOut, errors=WRITE_ERRORS,
           permission="tasks:write")
def update_task(task_id, body, params):
    _check_contact(body)
    return call("tasks", "update_task", task_id, body)


@api.route("/tasks/{task_id}", "DELETE", "Cancel an open task (kept, with status canceled)", TAG,
           query=s.CancelQuery, response=s.TaskOut, errors=(400, 404, 409, 503, 504),
           permission="tasks:write")
def cancel_task(task_id, body, params):
    return call("tasks", "cancel_task", task_id, params.get("reason"))


@api.route("/tasks/{task_id}/complete", "POST",
           "Complete an open task with its result (409 if already done); a recurring task gets its next occurrence",
           TAG, body=s.CompleteIn, response=s.TaskOut, errors=WRITE_ERRORS,
           permission="tasks:write")
def complete_task(task_id, body, params):
    return call("tasks", "complete_task", task_id, body)


@api.route("/calendar", "GET", "A user's tasks and meetings due in [from, to), ordered by time",
           TAG, query=s.CalendarQuery, response=s.TaskPage, permission="tasks:read")
def calendar(body, params):
    return call("tasks", "calendar", params)


@api.route("/agenda", "GET",
           "Today for a user: overdue tasks, today's tasks, then open deals with no open task",
           TAG, query=s.AgendaQuery, response=s.AgendaOut, permission="tasks:read")
def agenda(body, params):
    person = params.get("assignee_id") or (g.get("identity") or {}).get("user_id")
    return call("tasks", "agenda", params, _open_deals(person) if person else None)


def _open_deals(owner_id):
    """The owner's open deals, or None if the deals service cannot answer now (the agenda
    still shows the tasks, and says the deals part is missing)."""
    try:
        page = call("deals", "list_deals", {"owner_id": owner_id, "status": "open",
                                            "limit": AGENDA_DEALS_LIMIT}, timeout=2)
    except CrmError:
        return None
    return [{k: d.get(k) for k in ("id", "title", "stage_id", "pipeline_id", "contact_id",
                                   "amount", "currency")}
            for d in (page or {}).get("items", [])]


# stage task rules are rules of the automation engine (services/automation/task_rules.py)
RULE_TAG = "task-rules"


@api.route("/task-rules", "GET", "Task rules per pipeline stage", RULE_TAG,
           query=s.TaskRuleListQuery, response=s.TaskRulePage, permission="task-rules:read")
def list_rules(body, params):
    return call("automation", "list_task_rules", params)


@api.route("/task-rules", "POST",
           "Add a rule: a deal entering (pipeline_id, stage_id) gets this task, due due_in_minutes later",
           RULE_TAG, body=s.TaskRuleIn, response=s.TaskRuleOut, status=201, errors=WRITE_ERRORS,
           permission="task-rules:write")
def create_rule(body, params):
    return call("automation", "create_task_rule", body)


@api.route("/task-rules/{rule_id}", "GET", "Get a task rule", RULE_TAG, response=s.TaskRuleOut,
           permission="task-rules:read")
def get_rule(rule_id, body, params):
    return call("automation", "get_task_rule", rule_id)


@api.route("/task-rules/{rule_id}", "PATCH", "Change a task rule", RULE_TAG, body=s.TaskRuleIn,
           partial=True, response=s.TaskRuleOut, errors=WRITE_ERRORS,
           permission="task-rules:write")
def update_rule(rule_id, body, params):
    return call("automation", "update_task_rule", rule_id, body)


@api.route("/task-rules/{rule_id}", "DELETE", "Delete a task rule", RULE_TAG,
           response=s.TaskRuleOut, permission="task-rules:write")
def delete_rule(rule_id, body, params):
    return call("automation", "delete_task_rule", rule_id)
