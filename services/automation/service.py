"""Automation service entrypoints: thin; rules in operations.py, campaigns in campaigns.py,
storage in store.py."""
import logging

from nameko.timer import timer

from contracts.events import SOURCES, registry
from crm_common.clock import Clock, ClockEntrypoints
from crm_common.config import get_settings
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED, Timeout, Unavailable
from crm_common.health import HealthEntrypoints
from crm_common.messaging.events import reliable_handler
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.batches import demand_bound_batch_handler
from crm_common.messaging.bindings import DemandBindings
from crm_common.messaging.rpc import rpc
from crm_common.mongo import MongoStore
from crm_common.timeutil import parse_iso
from services.automation.actions import Actions
from services.automation.campaigns import Campaigns
from services.automation.engine import NOT_TRIGGERS, leaves_copies
from services.automation.dependencies import CauseRpc, depth_of
from services.automation.operations import Automation
from services.automation.store import AutomationStore
from services.automation.task_rules import TaskRules

log = logging.getLogger(__name__)
CONFIG = get_settings().automation


def _events_of(source):
    return sorted(kind for src, kind in registry() if src == source)


def _always_of(source):
    """The types this service needs whatever its rules (the others: once a rule names one)."""
    if source in CONFIG.keep_events_of:
        return _events_of(source)
    return [kind for kind in _events_of(source) if leaves_copies(source, kind)]


def _source_handler(source):
    @demand_bound_batch_handler(source, _events_of(source), _always_of(source))
    def handle(self, batch):
        taken = self.automation.take_in([delivery.event for delivery in batch])
        for delivery in batch:
            rules = Automation.triggered(delivery.event, taken)
            if rules:
                self.automation_with(self.dispatch.with_context(delivery.context)).fire(
                    delivery.event, depth_of(delivery.context), taken, rules)

    handle.__name__ = f"on_{source}_events"
    handle.__doc__ = ("Every event of this source, in batches (crm_common.messaging.batches): "
                      "kept for dry runs, and the rules it triggers run.")
    return handle


class AutomationService(HealthEntrypoints, ClockEntrypoints):
    name = "automation"
    tick_seconds = CONFIG.tick_seconds

    store = MongoStore(AutomationStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    # a call, message or note event no rule names is not routed here at all (each cost
    # ~2 ms of CPU and the rules version read)
    bindings = DemandBindings(lambda store: store.rule_event_types())
    tasks_rpc = CauseRpc("tasks")
    deals_rpc = CauseRpc("deals")
    contacts_rpc = CauseRpc("contacts")
    conversations_rpc = CauseRpc("conversations")
    search_rpc = CauseRpc("search")
    invoices_rpc = CauseRpc(CONFIG.invoice_service)
    notifications_rpc = CauseRpc("notifications")

    @property
    def clock(self):
        return Clock(self.store, CONFIG.test_clock)

    @property
    def automation(self):
        return self.automation_with(self.dispatch)

    def automation_with(self, dispatch):
        rpcs = {"tasks": self.tasks_rpc, "deals": self.deals_rpc, "contacts": self.contacts_rpc,
                "conversations": self.conversations_rpc, "invoices": self.invoices_rpc}
        actions = Actions(rpcs, self.store, CONFIG, self.clock, dispatch)
        return Automation(self.store, self.caller, self.clock, CONFIG, actions, dispatch)

    @property
    def campaigns(self):
        return Campaigns(self.store, self.caller, self.clock, CONFIG, self.conversations_rpc,
                         self.contacts_rpc, self.dispatch, self.deals_rpc, self.search_rpc)

    # rules
    @rpc(expected_exceptions=EXPECTED)
    def create_rule(self, payload):
        rule = self.automation.create_rule(payload)
        self.bindings.refresh(self.store)   # before the answer
        return rule

    @rpc(expected_exceptions=EXPECTED)
    def get_rule(self, rule_id):
        return self.automation.get_rule(rule_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_rule(self, rule_id, payload):
        rule = self.automation.update_rule(rule_id, payload)
        self.bindings.refresh(self.store)
        return rule

    @rpc(expected_exceptions=EXPECTED)
    def delete_rule(self, rule_id):
        return self.automation.delete_rule(rule_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_rules(self, params):
        return self.automation.list_rules(params)

    @rpc(expected_exceptions=EXPECTED)
    def list_triggers(self):
        return self.automation.triggers()

    @rpc(expected_exceptions=EXPECTED)
    def dry_run(self, rule_id, payload=None):
        return self.automation.dry_run(rule_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def list_runs(self, rule_id=None, params=None):
        return self.automation.list_runs(rule_id, params)

    # the stage task rules (/task-rules), rules of this engine
    @property
    def task_rules(self):
        return TaskRules(self.store, self.caller, self.clock)

    @rpc(expected_exceptions=EXPECTED)
    def create_task_rule(self, payload):
        return self.task_rules.create(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_task_rule(self, rule_id):
        return self.task_rules.get(rule_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_task_rule(self, rule_id, payload):
        return self.task_rules.update(rule_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_task_rule(self, rule_id):
        return self.task_rules.delete(rule_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_task_rules(self, params):
        return self.task_rules.list(params)

    # segments and campaigns
    @rpc(expected_exceptions=EXPECTED)
    def create_segment(self, payload):
        return self.campaigns.create_segment(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_segment(self, segment_id):
        return self.campaigns.get_segment(segment_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_segments(self, params):
        return self.campaigns.list_segments(params)

    @rpc(expected_exceptions=EXPECTED)
    def delete_segment(self, segment_id):
        return self.campaigns.delete_segment(segment_id)

    @rpc(expected_exceptions=EXPECTED)
    def count_segment(self, segment_id):
        return self.campaigns.count_segment(segment_id)

    @rpc(expected_exceptions=EXPECTED)
    def create_campaign(self, payload):
        return self.campaigns.create_campaign(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_campaign(self, campaign_id):
        return self.campaigns.get_campaign(campaign_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_campaigns(self, params):
        return self.campaigns.list_campaigns(params)

    @rpc(expected_exceptions=EXPECTED)
    def send_campaign(self, campaign_id, payload=None):
        return self.campaigns.send(campaign_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def unsubscribe(self, token):
        """The public unsubscribe link (no login): honoured at once."""
        return self.campaigns.unsubscribe(token)

    # time: every replica's timer works; run keys and compare-and-set claims keep it once
    @timer(interval=CONFIG.tick_seconds)
    def tick(self):
        try:
            self.task_rules.migrate(self.tasks_rpc({}))
        except (Unavailable, Timeout) as exc:  # tasks not up yet: next tick
            log.info("stage task rules not copied yet: %s", exc)
        self.automation.seed_defaults()
        # rules written by other paths (stage task rules, seeds) bound within a tick
        self.bindings.refresh(self.store)
        try:
            self.automation.copy_birthday_greetings(
                lambda: self.notifications_rpc({}).birthday_greeting_owners())
        except Exception as exc:  # noqa: BLE001 - notifications not up yet: next tick
            log.info("birthday greetings not copied yet: %s", exc)
        handled = self.automation.tick()
        if handled:
            log.info("automation timer handled %d", handled)

    @timer(interval=CONFIG.tick_seconds)
    def campaign_tick(self):
        """Campaigns on their own timer: a tick's sends (up to 200) no longer wait for the
        rules' timer work (two RPCs, the time triggers' scans), and a tick that ran long is
        followed at once by the next (nameko's timer keeps its schedule)."""
        handled = self.campaigns.tick()
        if handled:
            log.info("campaign timer handled %d", handled)


    # other services' events
    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The users' copy: time zone (working hours of delays), team."""
        self.store.upsert_user(event["data"]["user"], parse_iso(event["occurred_at"]))

    for _source in SOURCES:
        if _source not in NOT_TRIGGERS:
            locals()[f"on_{_source}_events"] = _source_handler(_source)
    del _source
