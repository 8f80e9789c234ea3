"""Telephony service entrypoints: thin; the work is in calls.py, storage in store.py,
provider formats in providers/, click-to-call adapters in originate/."""
import logging

from crm_common.config import get_settings
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED, BadRequest
from crm_common.messaging.events import reliable_handler
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from services.telephony.calls import CallLog, Calls, dump_call
from services.telephony.dependencies import Background
from services.telephony.originate import ADAPTERS as ORIGINATE
from services.telephony.providers import asterisk, twilio, zadarma
from services.telephony.store import TelephonyStore

log = logging.getLogger(__name__)
PROVIDERS = {"twilio": twilio, "zadarma": zadarma, "asterisk": asterisk}


class TelephonyService(HealthEntrypoints):
    name = "telephony"

    store = MongoStore(TelephonyStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    contacts_rpc = ServiceRpc("contacts")
    background = Background()
    settings = get_settings().telephony

    @property
    def calls(self):
        return Calls(self.store, self.caller, self.settings, self.contacts_rpc,
                     self.store.settings.default_region)

    @rpc(expected_exceptions=EXPECTED)
    def ingest(self, payload):
        """A canonical event; the answer names the call, its contact and owner's extension.
        A PBX waits on it: the call record and its events are stored in one transaction,
        the events published after the answer."""
        return self._announce_after_reply(self.calls.ingest, payload)

    @rpc(expected_exceptions=EXPECTED)
    def ingest_provider(self, provider, payload):
        """A provider's payload (signature already checked by the gateway) ->
        {"answer": ..., "reply": the body that provider expects back}."""
        adapter = PROVIDERS.get(provider)
        if adapter is None:
            raise BadRequest("Unknown provider", {"provider": provider})
        answer = self._announce_after_reply(self.calls.ingest_provider, adapter, payload)
        reply = adapter.reply(answer, payload) if hasattr(adapter, "reply") else None
        return {"answer": answer, "reply": reply}

    @rpc(expected_exceptions=EXPECTED)
    def get_call(self, call_id):
        return CallLog(self.calls).get(call_id)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind="call", ids=None, after=None, limit=500):
        """For the search service: calls by id, or a page by id."""
        return self.store.search_records("calls", lambda docs: [dump_call(d) for d in docs],
                                         ids, after, limit)

    @rpc(expected_exceptions=EXPECTED)
    def list_calls(self, params):
        return CallLog(self.calls).list(params)

    @rpc(expected_exceptions=EXPECTED)
    def calls_report(self, params):
        return CallLog(self.calls).report(params)

    @rpc(expected_exceptions=EXPECTED)
    def click_to_call(self, payload):
        adapter = ORIGINATE.get(self.settings.originate)
        if adapter is None:
            raise BadRequest("Click-to-call is not configured",
                             {"TELEPHONY_ORIGINATE": self.settings.originate})
        call_log = CallLog(self.calls)
        doc, job = call_log.new_origination(payload, self.settings.originate)
        result, session = adapter.request(self.settings, job)
        answer = call_log.originate_result(doc["_id"], result)
        if session is not None:
            self.background.follow_origination(adapter, session, job, self.store, self.settings)
        return answer

    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The agents' copy: extension (where a call is routed), name, active."""
        self.calls.user_upserted(event)

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """The merged contacts' calls now belong to the survivor."""
        self.store.repoint_contact("calls", event)
