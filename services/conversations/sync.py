"""Mailbox sync: a claimed mailbox is read from its last UID (UIDVALIDITY kept with it),
each new message stored once (its dedupe key: the Message-ID, else UIDVALIDITY+UID),
matched to a contact by the sender's address, threaded by In-Reply-To/References, then
by subject within the client's conversation. Where the server offers IDLE the worker
keeps the connection and waits for new mail; otherwise the mailbox is due again after
its poll interval. A failure is recorded on the mailbox and retried with backoff; each
mailbox runs in its own green thread, so one that hangs or fails blocks no other."""
import logging
from datetime import timedelta

from greenlet import GreenletExit

from crm_common.ids import new_id
from crm_common.timeutil import as_utc, utcnow
from services.conversations import mail
from services.conversations.operations import unseal

log = logging.getLogger(__name__)
BATCH = 100
HISTORY_MARGIN = timedelta(minutes=10)


class MailboxSync:
    def __init__(self, conversations, announce, settings, holder, stopping):
        self.ops = conversations          # operations.Conversations as the service itself
        self.store = conversations.store
        self.announce = announce          # (write, *args) -> result, events published
        self.settings = settings
        self.holder = holder
        self.stopping = stopping

    def lease(self):
        return utcnow() + timedelta(seconds=self.settings.lease_s)

    def run(self, mailbox_id):
        """Sync (and IDLE while the server offers it) until the lease is lost, then let go."""
        doc = self.store.get("mailboxes", mailbox_id)
        if doc is None:
            return
        conn = None
        try:
            imap = doc["imap"]
            conn = mail.imap_connect(imap, unseal(imap.get("password")), self.settings.timeout_s)
            idle = mail.offers_idle(conn)
            while True:
                doc = self.sync_once(conn, doc)
                ok = self.store.renew_mailbox(mailbox_id, self.holder, self.lease(), {
                    "status": "ok", "last_error": None, "failures": 0,
                    "last_sync_at": utcnow(), "idle": idle})
                if not ok or not idle or self.stopping():
                    break
                mail.idle_wait(conn, self.settings.idle_s)
                doc = self.store.get("mailboxes", mailbox_id)
                if doc is None or not doc.get("active") or self.stopping():
                    break
            self.store.release_mailbox(mailbox_id, self.holder, {
                "next_sync_at": utcnow() + timedelta(seconds=(doc or {}).get("poll_seconds", 60))})
        except GreenletExit:
            # the service stops: another replica (or this one restarted) takes it at once
            try:
                self.store.release_mailbox(mailbox_id, self.holder, {"next_sync_at": utcnow()})
            except Exception:  # noqa: BLE001 - its lease runs out instead
                log.warning("mailbox %s not given back at stop", mailbox_id)
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the mailbox, retried with backoff
            failures = (doc or {}).get("failures", 0) + 1
            wait = min(self.settings.backoff_s * 2 ** (failures - 1), self.settings.backoff_max_s)
            text = str(exc) if isinstance(exc, mail.MailError) else f"{type(exc).__name__}: {exc}"
            log.warning("mailbox %s failed (%d): %s", mailbox_id, failures, text)
            self.store.release_mailbox(mailbox_id, self.holder, {
                "status": "error", "last_error": text[:1000], "failures": failures,
                "next_sync_at": utcnow() + timedelta(seconds=wait)})
        finally:
            if conn is not None:
                mail.close(conn)

    def sync_once(self, conn, doc):
        self.ops.known = {}  # senders met in this pass are looked up once
        uidvalidity = mail.select(conn, doc.get("folder") or "INBOX")
        last_uid = doc.get("last_uid") or 0
        if doc.get("uidvalidity") not in (None, uidvalidity):
            last_uid = 0  # the folder was rebuilt: read again; Message-IDs keep it single
        uids = mail.new_uids(conn, last_uid)
        for start in range(0, len(uids), BATCH):
            part = uids[start:start + BATCH]
            fetched = mail.fetch(conn, part, self.settings.max_message_bytes)
            stored = 0
            for uid in part:
                if uid in fetched:
                    raw, size, headers_only = fetched[uid]
                    stored += bool(self.store_one(doc, uidvalidity, uid, raw, size, headers_only))
            doc = self.store.mailbox_progress(doc["_id"], uidvalidity, part[-1], stored)
            if self.stopping():
                break
        if not uids and doc.get("uidvalidity") != uidvalidity:
            doc = self.store.update("mailboxes", doc["_id"], {"uidvalidity": uidvalidity,
                                                               "last_uid": last_uid})
        return doc

    def store_one(self, mailbox, uidvalidity, uid, raw, size, headers_only):
        try:
            fields, attachments = mail.parse(raw, self.settings.max_attachment_bytes,
                                             headers_only, size)
        except Exception as exc:  # noqa: BLE001 - one unreadable message never stops a mailbox
            log.warning("mailbox %s uid %s unreadable: %s", mailbox["_id"], uid, exc)
            return False
        key = (f"mail:{mailbox['_id']}:{fields['message_id']}" if fields["message_id"]
               else f"mail:{mailbox['_id']}:uid:{uidvalidity}:{uid}")
        if self.store.message_by_dedupe(key):
            return False
        sender = fields["from"]
        if not sender.get("address") or sender["address"] == mailbox["address"]:
            return False  # our own copy (sent from elsewhere) or no usable sender
        # auto-replies, and the history found in the mailbox when it was connected (dated
        # well before: clocks and Date headers are loose), never become leads
        older = fields["date"] is not None and mailbox.get("created_at") is not None and \
            fields["date"] < as_utc(mailbox["created_at"]) - HISTORY_MARGIN
        shared = bool(mailbox.get("shared")) and not fields["auto"] and not older
        conv, thread_id = self.thread_of(mailbox, fields, shared)
        stored_attachments = []
        for meta, data in attachments:
            meta = dict(meta, id=None)
            if data is not None:
                meta["id"] = new_id()
                self.store.put_attachment(meta["id"], data, dict(meta, mailbox_id=mailbox["_id"]))
            stored_attachments.append(meta)
        msg = self.ops.inbound_doc(
            "email", key, fields["text"], at=fields["date"] or utcnow(),
            mailbox_id=mailbox["_id"], message_id=fields["message_id"],
            in_reply_to=fields["in_reply_to"], references=fields["references"],
            subject=fields["subject"], html=fields["html"], to=fields["to"], cc=fields["cc"],
            attachments=stored_attachments, imap_uid=uid, uidvalidity=uidvalidity,
            **{"from": sender})
        msg["thread_id"] = thread_id or msg["_id"]
        return self.announce(self._record, conv, msg, mailbox)

    def _record(self, conv, msg, mailbox):
        stored, created, events = self.ops.record_inbound(
            conv, msg, mailbox.get("first_response_minutes"),
            not_before=mailbox.get("created_at"),
            thread_key=lambda conversation_id: _thread_key(conversation_id, msg.get("subject")))
        if created:
            events += self.ops.apply_pending_lead(stored["conversation_id"], conv)
        return created, events

    def thread_of(self, mailbox, fields, shared):
        """(conversation doc, thread id or None): by the messages it answers, else the
        sender's contact (or a lead made once), then by subject in that conversation."""
        ids = [i for i in [fields["in_reply_to"], *reversed(fields["references"])] if i]
        if ids:
            parents = self.store.messages_by_ids(ids)
            if parents:
                parent = parents[0]
                conv = self.store.get("conversations", parent["conversation_id"])
                if conv is not None:
                    return conv, parent.get("thread_id") or parent["_id"]
        sender = fields["from"]
        conv = self.ops.conversation_for_sender(
            "email", f"email:{sender['address']}", {"email": sender["address"]},
            sender.get("name"), fields["subject"] + "\n\n" + (fields["text"] or ""),
            fields["message_id"] or new_id(), shared)
        if conv.get("_id") and fields["subject"]:
            found = self.store.latest_of_thread_key(_thread_key(conv["_id"], fields["subject"]))
            if found is not None:
                return conv, found.get("thread_id")
        return conv, None


def _thread_key(conversation_id, subject):
    key = mail.subject_key(subject)
    return f"{conversation_id}:{key}" if key else None
