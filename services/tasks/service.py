"""Tasks service entrypoints: thin; the work is in operations.py, storage in store.py."""
import logging

from nameko.timer import timer

from crm_common.config import get_settings
from crm_common.context import CallerContext
from crm_common.custom_fields import CustomFieldEntrypoints
from crm_common.errors import EXPECTED
from crm_common.messaging.events import reliable_handler
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import rpc
from crm_common.clock import ClockEntrypoints
from crm_common.timeutil import utcnow
from services.tasks.clock import Clock
from services.tasks.dependencies import ScanPool
from services.tasks.operations import Tasks, dump_task
from services.tasks.store import TasksStore

log = logging.getLogger(__name__)
CONFIG = get_settings().tasks


class TasksService(HealthEntrypoints, ClockEntrypoints, CustomFieldEntrypoints):
    name = "tasks"
    tick_seconds = CONFIG.tick_seconds

    store = MongoStore(TasksStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    scan_map = ScanPool(CONFIG.scan_concurrency)

    @property
    def clock(self):
        return Clock(self.store, CONFIG.test_clock)

    @property
    def tasks(self):
        return Tasks(self.store, self.caller, self.clock, CONFIG)

    # tasks
    @rpc(expected_exceptions=EXPECTED)
    def create_task(self, payload, source_key=None, source=None, creator_id=None):
        """For a service creating tasks (automation's actions): `source_key` is its key of
        the cause (a second call with it answers the task made by the first), `source` the
        task's source ({type, id, ...}), `creator_id` whom it acts for."""
        return self._announce(self.tasks.create, payload, source_key, source, creator_id)

    @rpc(expected_exceptions=EXPECTED)
    def get_task(self, task_id):
        return self.tasks.get(task_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_task(self, task_id, payload):
        return self._announce(self.tasks.update, task_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def cancel_task(self, task_id, reason=None):
        return self._announce(self.tasks.cancel, task_id, reason)

    @rpc(expected_exceptions=EXPECTED)
    def complete_task(self, task_id, payload):
        return self._announce(self.tasks.complete, task_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def list_tasks(self, params):
        return self.tasks.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def explain_list(self, params):
        return self.tasks.explain_list(params)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind="task", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search service: tasks by id, created in a window, or a page by id."""
        now = utcnow()
        return self.store.search_records("tasks", lambda docs: [dump_task(d, now) for d in docs],
                                         ids, after, limit, since, cursor, until,
                                         window_field="created_at")

    @rpc(expected_exceptions=EXPECTED)
    def calendar(self, params):
        return self.tasks.calendar(params)

    @rpc(expected_exceptions=EXPECTED)
    def agenda(self, params, open_deals=None):
        return self.tasks.agenda(params, open_deals)

    @rpc(expected_exceptions=EXPECTED)
    def report(self, params):
        return self.tasks.report(params)

    # typed custom fields and the minimal data set (crm_common.custom_fields)
    CUSTOM_ENTITIES = ("task",)

    def completeness_source(self):
        return self.tasks.completeness_records, "assignee_id"

    # stage rules held here before they became automation rules: read once by the
    # automation service's migration (services/automation/task_rules.py)
    @rpc(expected_exceptions=EXPECTED)
    def list_rules(self, params):
        return self.tasks.list_rules(params)

    # time: the timer of every replica scans; the test clock exists only with CRM_TEST_CLOCK=1
    @timer(interval=CONFIG.tick_seconds)
    def tick(self):
        sent = self.tasks.scan(self._send_one, pmap=self.scan_map)
        if sent:
            log.info("tasks timer sent %d notices", sent)

    def _send_one(self, event):
        self.dispatch(event["type"], event)


    # other services' events
    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The assignees' copy: manager, team, time zone, active."""
        self.tasks.on_user_upserted(event)

    @reliable_handler("telephony", "call_missed")
    def on_call_missed(self, event):
        """A callback task for the contact's owner (else the called agent)."""
        self._handle_and_announce(self.tasks.on_call_missed, event)

    @reliable_handler("telephony", "call_answered")
    def on_call_answered(self, event):
        """Closes the contact's callback tasks for calls missed before it."""
        self._handle_and_announce(self.tasks.on_call_answered, event)

    @reliable_handler("telephony", "call_ended")
    def on_call_ended(self, event):
        """As call_answered, when the call was answered."""
        self._handle_and_announce(self.tasks.on_call_answered, event)

    @reliable_handler("deals", "lead_routed")
    def on_lead_routed(self, event):
        """The first-touch task of a routed lead, for its owner."""
        self._handle_and_announce(self.tasks.on_lead_routed, event)

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """The merged contacts' tasks now belong to the survivor."""
        self.store.repoint_contact("tasks", event)

    @reliable_handler("notes", "commitment_made")
    def on_commitment_made(self, event):
        """The reminder task of a commitment recorded in a note, for its owner."""
        self._handle_and_announce(self.tasks.on_commitment_made, event)

