"""Deals service entrypoints: thin; the work is in operations.py (reports.py builds the
aggregations), storage in store.py."""

from crm_common.context import Caller, CallerContext
from crm_common.custom_fields import CustomFieldEntrypoints
from crm_common.errors import EXPECTED
from crm_common.messaging.events import reliable_handler
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from crm_common.timeutil import parse_iso
from services.deals.leads import LeadRouter
from services.deals.operations import Deals
from services.deals.participants import DealContacts
from services.deals.sources import LeadSources
from services.deals.store import DealsStore


class DealsService(HealthEntrypoints, CustomFieldEntrypoints):
    name = "deals"

    store = MongoStore(DealsStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    contacts_rpc = ServiceRpc("contacts")

    @property
    def deals(self):
        return Deals(self.store, self.caller, self.contacts_rpc)

    @property
    def sources(self):
        return LeadSources(self.deals)

    # configurable lists
    @rpc(expected_exceptions=EXPECTED)
    def get_settings(self):
        return self.deals.get_settings()

    @rpc(expected_exceptions=EXPECTED)
    def update_settings(self, payload):
        return self.deals.update_settings(payload)

    # pipelines
    @rpc(expected_exceptions=EXPECTED)
    def list_pipelines(self, params):
        return self.deals.list_pipelines(params)

    @rpc(expected_exceptions=EXPECTED)
    def get_pipeline(self, pipeline_id):
        return self.deals.get_pipeline(pipeline_id)

    @rpc(expected_exceptions=EXPECTED)
    def create_pipeline(self, payload):
        return self.deals.create_pipeline(payload)

    @rpc(expected_exceptions=EXPECTED)
    def update_pipeline(self, pipeline_id, payload):
        return self.deals.update_pipeline(pipeline_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_pipeline(self, pipeline_id):
        return self.deals.delete_pipeline(pipeline_id)

    # deals
    @rpc(expected_exceptions=EXPECTED)
    def create_deal(self, payload):
        return self._announce(self.deals.create, payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_deal(self, deal_id):
        return self.deals.get(deal_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_deal(self, deal_id, payload):
        return self._announce(self.deals.update, deal_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def set_items_total(self, deal_id, total):
        """For the sales service: the deal's line items total; the amount follows it unless
        `amount_override` (a no-op when nothing changes)."""
        return self._announce(self.deals.set_items_total, deal_id, int(total))

    @rpc(expected_exceptions=EXPECTED)
    def delete_deal(self, deal_id):
        return self._announce(self.deals.delete, deal_id)

    @rpc(expected_exceptions=EXPECTED)
    def restore_deal(self, deal_id):
        """A deleted deal back (POST /api/v1/deals/{id}/restore)."""
        return self._announce(self.deals.restore, deal_id)

    @rpc(expected_exceptions=EXPECTED)
    def move_deal(self, deal_id, payload):
        return self._announce(self.deals.move, deal_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def list_deals(self, params):
        return self.deals.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind="deal", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search service: deals by id, changed in a window, or a page by id."""
        return self.store.search_records("deals", self.deals._dump_many, ids, after, limit,
                                         since, cursor, until)

    # typed custom fields and the minimal data set (crm_common.custom_fields)
    CUSTOM_ENTITIES = ("deal",)

    @property
    def custom_index(self):
        return self.store.index_custom_value

    def completeness_source(self):
        return self.deals.completeness_records, "owner_id"

    # several contacts on a deal, each with a role (participants.py)
    @rpc(expected_exceptions=EXPECTED)
    def get_deal_contacts(self, deal_id):
        return DealContacts(self.deals).get(deal_id)

    @rpc(expected_exceptions=EXPECTED)
    def set_deal_contacts(self, deal_id, payload):
        return self._announce(DealContacts(self.deals).replace, deal_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def deals_of_contact(self, contact_id, params=None):
        return DealContacts(self.deals).of_contact(contact_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def deal_history(self, deal_id, params):
        return self.deals.history(deal_id, params)

    # lead sources (the registry behind /deal-settings lead_sources) and their report
    @rpc(expected_exceptions=EXPECTED)
    def list_lead_sources(self, params):
        return self.sources.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def get_lead_source(self, source_id):
        return self.sources.get(source_id)

    @rpc(expected_exceptions=EXPECTED)
    def create_lead_source(self, payload):
        return self.sources.create(payload)

    @rpc(expected_exceptions=EXPECTED)
    def update_lead_source(self, source_id, payload):
        return self.sources.update(source_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_lead_source(self, source_id):
        return self.sources.delete(source_id)

    @rpc(expected_exceptions=EXPECTED)
    def sources_report(self, params):
        return self.sources.report(params)

    # targets
    @rpc(expected_exceptions=EXPECTED)
    def create_target(self, payload):
        return self.deals.create_target(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_target(self, target_id):
        return self.deals.get_target(target_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_target(self, target_id, payload):
        return self.deals.update_target(target_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_target(self, target_id):
        return self.deals.delete_target(target_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_targets(self, params):
        return self.deals.list_targets(params)

    @rpc(expected_exceptions=EXPECTED)
    def target_progress(self, params):
        return self.deals.progress(params)

    # reports (explain=True answers the query plan instead: the bench and ops read it)
    @rpc(expected_exceptions=EXPECTED)
    def funnel_report(self, params, explain=False, exact=False):
        """From the funnel counters; exact=True aggregates the history (the definition)."""
        return self.deals.funnel(params, explain, exact)

    @rpc(expected_exceptions=EXPECTED)
    def rebuild_funnel_counters(self):
        """Admin/ops: recompute the funnel counters from deal_history."""
        return self.deals.rebuild_funnel_counters()

    @rpc(expected_exceptions=EXPECTED)
    def sales_report(self, params, explain=False, exact=False):
        """From the report summaries; exact=True aggregates the deals (the definition)."""
        return self.deals.sales(params, explain, exact)

    @rpc(expected_exceptions=EXPECTED)
    def forecast_report(self, params, explain=False, exact=False):
        """From the report summaries; exact=True aggregates the open deals (the definition)."""
        return self.deals.forecast(params, explain, exact)

    @rpc(expected_exceptions=EXPECTED)
    def rebuild_report_summaries(self):
        """Admin/ops: recompute the sales and forecast summaries from the deals (after deals
        were written behind the service's back)."""
        return self.deals.rebuild_report_summaries()

    # other services' facts
    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """Who is an active user, for user-type custom fields."""
        self.store.upsert_user(event["data"]["user"], parse_iso(event["occurred_at"]))

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """The merged contacts' deals now belong to the survivor."""
        self.deals.contacts_merged(event["data"])

    @reliable_handler("contacts", "lead_captured")
    def on_lead_captured(self, event):
        """An inbound request: record it, join or open a deal, choose the owner (docs/leads.md).
        The service acts on its own here, whoever submitted the request."""
        router = LeadRouter(Deals(self.store, Caller(), self.contacts_rpc))
        # a redelivery announces again under the same event ids: a copy still waiting in
        # the outbox is not stored twice (crm_common.messaging.outbox)
        self._handle_and_announce(router.capture, event["data"])
