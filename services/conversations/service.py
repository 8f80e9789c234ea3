"""Conversations service entrypoints: thin; the work is in operations.py (conversations,
inbox, sending rules), sync.py (mailboxes), sender.py (the outgoing queue), mail.py (IMAP,
SMTP, MIME), storage in store.py."""
import logging
from datetime import timedelta

from nameko.timer import timer

from crm_common.config import get_settings
from crm_common.context import Caller, CallerContext
from crm_common.errors import EXPECTED
from crm_common.health import HealthEntrypoints
from crm_common.ids import new_id
from crm_common.messaging.events import reliable_handler
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from crm_common.mongo import MongoStore
from crm_common.timeutil import to_iso, utcnow
from services.conversations.dependencies import Workers
from services.conversations.operations import Conversations, conversation_event, dump_message
from services.conversations.sender import HANDED_OVER, Sender
from services.conversations.store import ConversationsStore
from services.conversations.sync import MailboxSync

log = logging.getLogger(__name__)
SETTINGS = get_settings().conversations
HOLDER = new_id()  # this process, as the holder of mailbox and send leases


class ConversationsService(HealthEntrypoints):
    name = "conversations"

    store = MongoStore(ConversationsStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    contacts_rpc = ServiceRpc("contacts")
    deals_rpc = ServiceRpc("deals")
    workers = Workers()

    @property
    def ops(self):
        return Conversations(self.store, self.caller, self.contacts_rpc, self.deals_rpc)

    def _system(self):
        return Conversations(self.store, Caller(), self.contacts_rpc, self.deals_rpc)

    def _sender(self):
        # events published after the commit, beside the next sends
        return Sender(self.store, self.dispatch.after_reply, SETTINGS, HOLDER,
                      claimed=self.workers.take_claimed, rate=self.workers.note_rate)

    def _claim(self):
        """A message queued by this call, stored claimed by this process for its next send
        run (one write less than a claim), unless that run has a backlog already."""
        if not self.workers.may_claim(HANDED_OVER, SETTINGS.send_lease_s):
            return None
        return {"holder": f"{HOLDER}:queued", "taken": self.workers.hand_over,
                "lease_until": utcnow() + timedelta(seconds=SETTINGS.send_lease_s)}

    # mailboxes and channels
    @rpc(expected_exceptions=EXPECTED)
    def create_mailbox(self, payload):
        return self.ops.create_mailbox(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_mailbox(self, mailbox_id):
        return self.ops.get_mailbox(mailbox_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_mailbox(self, mailbox_id, payload):
        return self.ops.update_mailbox(mailbox_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_mailbox(self, mailbox_id):
        return self.ops.delete_mailbox(mailbox_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_mailboxes(self, params):
        return self.ops.list_mailboxes(params)

    @rpc(expected_exceptions=EXPECTED)
    def sync_mailbox(self, mailbox_id):
        """Due now: the next tick of any replica syncs it."""
        return self.ops.sync_now(mailbox_id)

    @rpc(expected_exceptions=EXPECTED)
    def create_channel(self, payload):
        return self.ops.create_channel(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_channel(self, channel_id):
        return self.ops.get_channel(channel_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_channel(self, channel_id, payload):
        return self.ops.update_channel(channel_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_channel(self, channel_id):
        return self.ops.delete_channel(channel_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_channels(self, params):
        return self.ops.list_channels(params)

    @rpc(expected_exceptions=EXPECTED)
    def webhook_secrets(self):
        """For the gateway, which checks WhatsApp's signatures and handshake."""
        return self._system().webhook_secrets()

    # the inbox
    @rpc(expected_exceptions=EXPECTED)
    def list_conversations(self, params):
        return self.ops.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def get_conversation(self, conversation_id):
        return self.ops.get(conversation_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_messages(self, conversation_id, params):
        return self.ops.messages(conversation_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def get_attachment(self, conversation_id, attachment_id):
        return self.ops.attachment(conversation_id, attachment_id)

    @rpc(expected_exceptions=EXPECTED)
    def assign(self, conversation_id, payload):
        return self._announce(self.ops.assign, conversation_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def close(self, conversation_id):
        return self._announce(self.ops.close, conversation_id)

    @rpc(expected_exceptions=EXPECTED)
    def reopen(self, conversation_id):
        return self._announce(self.ops.reopen, conversation_id)

    # sending: stored queued first, sent beside the answer (sender.py). No transaction:
    # queuing announces nothing and writes one document (the message, an insert on its
    # unique dedupe key); its conversation follows when it is sent
    # `sender`: the user's profile (name, email) as the gateway knows it, for a template's
    # `{{ user.<field> }}`
    @rpc(expected_exceptions=EXPECTED)
    def reply(self, conversation_id, payload, sender=None):
        message, _ = self.ops.reply(conversation_id, payload, self.caller.user_id, sender,
                                    claim=self._claim())
        self._send_soon()
        return message

    @rpc(expected_exceptions=EXPECTED)
    def start_conversation(self, contact_id, payload, sender=None):
        message, _ = self.ops.send_to_contact(contact_id, payload, self.caller.user_id, sender,
                                              claim=self._claim())
        self._send_soon()
        return message

    # message templates
    @rpc(expected_exceptions=EXPECTED)
    def create_template(self, payload):
        return self.ops.create_template(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_template(self, template_id):
        return self.ops.get_template(template_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_template(self, template_id, payload):
        return self.ops.update_template(template_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_template(self, template_id):
        return self.ops.delete_template(template_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_templates(self, params):
        return self.ops.list_templates(params)

    @rpc(expected_exceptions=EXPECTED)
    def render_template(self, template_id, payload, sender=None):
        return self.ops.render_template(template_id, payload, sender)

    @rpc(expected_exceptions=EXPECTED)
    def preview_template(self, payload, sender=None):
        return self.ops.preview_template(payload, sender)

    @rpc(expected_exceptions=EXPECTED)
    def send_to_contact(self, contact_id, channel, body, subject=None, template=None,
                        variables=None, deal_id=None, sender_user_id=None, idempotency_key=None,
                        attachments=None, template_id=None):
        """For automation: the stored (queued) message; consent checked (409 with the
        reason); the same idempotency_key again returns the first message."""
        payload = {"channel": channel, "body": body or "", "subject": subject,
                   "template": template, "variables": variables, "deal_id": deal_id,
                   "idempotency_key": idempotency_key, "attachments": attachments,
                   "template_id": template_id}
        message, _ = self.ops.send_to_contact(
            contact_id, {k: v for k, v in payload.items() if v is not None},
            sender_user_id or self.caller.user_id, claim=self._claim())
        self._send_soon()
        return message

    def _send_soon(self):
        sender = self._sender()
        self.workers.send_soon(lambda: sender.run_due(500))

    # inbound messengers and SMS (signatures checked by the gateway)
    @rpc(expected_exceptions=EXPECTED)
    def receive_whatsapp(self, payload, meta):
        ops = self._system()
        answer, found = ops.receive_whatsapp(payload, meta or {})
        for conv, msg, target in found:
            self._announce(self._record_inbound, ops, conv, msg, target)
        return answer

    @rpc(expected_exceptions=EXPECTED)
    def receive_sms(self, payload, meta):
        ops = self._system()
        answer, found = ops.receive_sms(payload, meta or {})
        for conv, msg, target in found:
            self._announce(self._record_inbound, ops, conv, msg, target)
        return answer

    def _record_inbound(self, ops, conv, msg, target):
        stored, _, events = ops.record_inbound(conv, msg, target)
        return stored, events + ops.apply_pending_lead(stored["conversation_id"], conv)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind="message", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search service: messages by id, a page by id, or those changed since a
        time (contracts/search.py RecordsPage)."""
        return self.store.search_records("messages", lambda docs: [dump_message(d) for d in docs],
                                         ids, after, limit, since, cursor, until)

    # background work
    @timer(interval=SETTINGS.tick_s)
    def sync_mailboxes(self):
        room = self.workers.room()
        if room <= 0 or self.workers.is_stopping():
            return
        now = utcnow()
        lease = now + timedelta(seconds=SETTINGS.lease_s)
        sync = MailboxSync(self._system(), self.dispatch.after_reply, SETTINGS, HOLDER,
                           self.workers.is_stopping)
        for doc in self.store.due_mailboxes(now, room * 2):
            if doc["_id"] in self.workers.running:
                continue
            if self.store.claim_mailbox(doc["_id"], HOLDER, now, lease):
                self.workers.sync(doc["_id"], sync.run)

    @timer(interval=SETTINGS.tick_s)
    def send_queued(self):
        """What is due (retries, what a dead sender left): by this process's run, if it is
        not running already."""
        sender = self._sender()
        self.workers.send_soon(lambda: sender.run_due(1000))

    @timer(interval=SETTINGS.tick_s)
    def escalate(self):
        """A client waiting past the first-response target: the manager is told, once."""
        for doc in self.store.due_escalations(utcnow()):
            self._announce(self._escalate_one, doc)

    def _escalate_one(self, doc):
        now = utcnow()
        if not self.store.claim_escalation(doc["_id"], doc["escalate_at"],
                                           {"escalated_at": now, "updated_at": now}):
            return None, []
        target = (doc["escalate_at"] - doc["waiting_since"]).total_seconds() / 60
        who = doc.get("contact_name") or "a client"
        return None, [conversation_event(
            "conversation_escalated", doc, None,
            f"{who} has waited {round(target, 1)} min for an answer",
            {"manager_id": None, "user_id": doc.get("assignee_id") or doc.get("owner_id"),
             "waiting_since": to_iso(doc["waiting_since"]), "target_seconds": int(target * 60)})]

    # what other services tell
    @reliable_handler("contacts", "lead_captured")
    def on_lead_captured(self, event):
        """A lead made for a new sender gets its conversation; a Telegram message captured
        through the inbound route joins the client's conversation."""
        self._handle_and_announce(self._system().link_lead, event)

    @reliable_handler("deals", "lead_routed")
    def on_lead_routed(self, event):
        data = event["data"]
        self._handle_and_announce(lambda e: self._system().link_deal(
            data.get("contact_id"), data.get("deal_id"), request_id=data.get("request_id")), event)

    @reliable_handler("deals", "deal_created")
    def on_deal_created(self, event):
        deal = event["data"].get("deal") or {}
        if deal.get("status", "open") == "open":
            self._handle_and_announce(lambda e: self._system().link_deal(
                deal.get("contact_id"), deal.get("id"), only_if_empty=True,
                request_id=event["data"].get("request_id")), event)

    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        self._system().contact_merged(event["data"])
