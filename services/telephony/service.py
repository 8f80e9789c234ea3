"""Telephony service entrypoints: thin; the work is in calls.py, storage in store.py,
provider formats in providers/, click-to-call adapters in originate/."""
import logging

from nameko.timer import timer

from crm_common.changes import WINDOW_TIMEOUT_S
from crm_common.config import get_settings
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED, BadRequest, Unavailable
from crm_common.messaging.events import reliable_handler
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from services.telephony.calls import CallLog, Calls, dump_call
from services.telephony import directory, recordings
from services.telephony import settings as telephony_settings
from services.telephony.dependencies import Background
from services.telephony.originate import ADAPTERS as ORIGINATE
from services.telephony.providers import asterisk, twilio, zadarma
from services.telephony.store import TelephonyStore

log = logging.getLogger(__name__)
PROVIDERS = {"twilio": twilio, "zadarma": zadarma, "asterisk": asterisk}
# the environment's settings, overridden by what an admin stored (read with a short cache)
RUNTIME = telephony_settings.RuntimeSettings(get_settings().telephony)


class TelephonyService(HealthEntrypoints):
    name = "telephony"

    store = MongoStore(TelephonyStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    contacts_rpc = ServiceRpc("contacts")
    # the copy's windows of contacts (crm_common/changes.py)
    contacts_sync_rpc = ServiceRpc("contacts", timeout=WINDOW_TIMEOUT_S)
    background = Background()

    @property
    def settings(self):
        return RUNTIME.current(self.store)

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
    def search_records(self, kind="call", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search service: calls by id, started in a window, or a page by id."""
        return self.store.search_records("calls", lambda docs: [dump_call(d) for d in docs],
                                         ids, after, limit, since, cursor, until,
                                         window_field="started_at")

    # recordings: fetched in the background, served by ranges to whoever sees the call
    @timer(interval=get_settings().telephony.recording_poll_s)
    def fetch_recordings(self):
        recordings.fetch_due(self.store, self.settings)

    @timer(interval=get_settings().telephony.contacts_sync_s)
    def sync_contact_phones(self):
        """What announced no event (imports, contacts older than the copy) into the copy."""
        directory.sync(self.store, self.contacts_sync_rpc)

    @timer(interval=600)
    def sweep_recordings(self):
        recordings.sweep(self.store)

    @rpc(expected_exceptions=EXPECTED)
    def recording_info(self, call_id):
        CallLog(self.calls).get(call_id)  # NotFound unless the caller may see the call
        return recordings.info(self.store, call_id)

    @rpc(expected_exceptions=EXPECTED)
    def recording_range(self, call_id, start, length):
        CallLog(self.calls).get(call_id)
        return recordings.read_range(self.store, call_id, start, length)

    @rpc(expected_exceptions=EXPECTED)
    def list_calls(self, params):
        return CallLog(self.calls).list(params)

    @rpc(expected_exceptions=EXPECTED)
    def calls_report(self, params):
        return CallLog(self.calls).report(params)

    @rpc(expected_exceptions=EXPECTED)
    def click_to_call(self, payload):
        """503 with the reason when no PBX is configured or it refused the request before
        dialing anything: then nothing is recorded."""
        settings = self.settings
        adapter = ORIGINATE.get(settings.originate)
        call_log = CallLog(self.calls)
        # the request's own faults (403, 422) before the platform's (503): writes nothing
        doc, job = call_log.new_origination(payload, settings.originate)
        missing = (adapter.not_configured(settings) if adapter is not None
                   else f"no click-to-call adapter (originate: {settings.originate!r})")
        if missing:
            raise Unavailable("Click-to-call is not configured: " + missing,
                              {"reason": missing, "originate": settings.originate})
        result, session = adapter.request(settings, job)
        if result["status"] == "failed":
            raise Unavailable("The PBX did not take the call: " + (result.get("reason") or ""),
                              {"reason": result.get("reason"),
                               "originate": settings.originate})
        call_log.record_origination(doc)
        answer = call_log.originate_result(doc["_id"], result)
        if session is not None:
            self.background.follow_origination(adapter, session, job, self.store, settings)
        return answer

    # settings (admin only: the gateway's permission telephony-settings:manage)
    @rpc(expected_exceptions=EXPECTED)
    def get_settings(self):
        return telephony_settings.view(self.settings, self.store.telephony_settings())

    @rpc(expected_exceptions=EXPECTED)
    def update_settings(self, payload):
        return telephony_settings.patch(self.store, RUNTIME, payload, self.caller.user_id)

    @rpc(expected_exceptions=EXPECTED)
    def test_settings(self, payload):
        return telephony_settings.test_connection(self.settings, payload)

    @rpc(expected_exceptions=EXPECTED)
    def connector_settings(self):
        """For the AMI connector (gateway permission telephony:connector)."""
        return telephony_settings.connector_view(self.store.telephony_settings())

    @rpc(expected_exceptions=EXPECTED)
    def webhook_secrets(self):
        """For the gateway, which checks the providers' signatures."""
        return telephony_settings.webhook_secrets(self.settings)

    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The agents' copy: extension (where a call is routed), name, active."""
        self.calls.user_upserted(event)

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """The merged contacts' calls now belong to the survivor; so do their numbers."""
        self.store.repoint_contact("calls", event)
        directory.contact_merged(self.store, event)

    # the contacts' numbers, so the ringing answer needs no RPC (services/telephony/directory.py)
    @reliable_handler("contacts", "contact_created")
    def on_contact_created(self, event):
        directory.contact_changed(self.store, event)

    @reliable_handler("contacts", "contact_updated")
    def on_contact_updated(self, event):
        directory.contact_changed(self.store, event)

    @reliable_handler("contacts", "contact_restored")
    def on_contact_restored(self, event):
        directory.contact_changed(self.store, event)

    @reliable_handler("contacts", "contact_deleted")
    def on_contact_deleted(self, event):
        directory.contact_deleted(self.store, event)
