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
from crm_common.timeutil import as_utc, to_iso, utcnow
from services.conversations import mail
from services.conversations.operations import (conversation_event, first_response_due,
                                               message_event, preview, unseal)

log = logging.getLogger(__name__)
BATCH = 200  # messages fetched, stored and announced together
HISTORY_MARGIN = timedelta(minutes=10)


class MailboxSync:
    def __init__(self, conversations, announce, settings, holder, stopping):
        self.ops = conversations          # operations.Conversations as the service itself
        self.store = conversations.store
        self.announce = announce  # (write, *args) -> result; its events published after it
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
        known = {}  # senders met in this pass: looked up once
        uidvalidity = mail.select(conn, doc.get("folder") or "INBOX")
        last_uid = doc.get("last_uid") or 0
        if doc.get("uidvalidity") not in (None, uidvalidity):
            last_uid = 0  # the folder was rebuilt: read again; Message-IDs keep it single
        uids = mail.new_uids(conn, last_uid)
        for start in range(0, len(uids), BATCH):
            part = uids[start:start + BATCH]
            fetched = mail.fetch(conn, part, self.settings.max_message_bytes)
            incoming = [self.read(doc, uidvalidity, uid, *fetched[uid])
                        for uid in part if uid in fetched]
            doc = self.store_batch(doc, uidvalidity, part[-1],
                                   [m for m in incoming if m is not None], known)
            if self.stopping():
                break
        if not uids and doc.get("uidvalidity") != uidvalidity:
            doc = self.store.update("mailboxes", doc["_id"], {"uidvalidity": uidvalidity,
                                                               "last_uid": last_uid})
        return doc

    def read(self, mailbox, uidvalidity, uid, raw, size, headers_only):
        """One fetched message -> what is stored of it (None: unreadable, or our own)."""
        try:
            fields, attachments = mail.parse(raw, self.settings.max_attachment_bytes,
                                             headers_only, size)
        except Exception as exc:  # noqa: BLE001 - one unreadable message never stops a mailbox
            log.warning("mailbox %s uid %s unreadable: %s", mailbox["_id"], uid, exc)
            return None
        sender = fields["from"]
        if not sender.get("address") or sender["address"] == mailbox["address"]:
            return None  # our own copy (sent from elsewhere) or no usable sender
        key = (f"mail:{mailbox['_id']}:{fields['message_id']}" if fields["message_id"]
               else f"mail:{mailbox['_id']}:uid:{uidvalidity}:{uid}")
        return {"uid": uid, "key": key, "fields": fields, "attachments": attachments}

    def store_batch(self, mailbox, uidvalidity, last_uid, incoming, known):
        """A fetched batch stored in one transaction with its events (published after the
        commit, beside the next batch): what is stored already is left out, the senders
        are matched to contacts in one call, the parents and subject threads read in one
        query each. -> the mailbox as it is now."""
        seen, fresh = set(), []
        stored_keys = self.store.stored_dedupe_keys([m["key"] for m in incoming])
        for item in incoming:
            if item["key"] not in stored_keys and item["key"] not in seen:
                seen.add(item["key"])
                fresh.append(item)
        plan = self.plan(mailbox, fresh, known)
        for item in fresh:
            item["msg"]["attachments"] = self.keep_attachments(mailbox, item["attachments"])
        return self.announce(self._record_batch, mailbox, uidvalidity, last_uid, plan)

    def plan(self, mailbox, fresh, known):
        """Each message's conversation (by the messages it answers, else its sender's
        contact, else a conversation waiting for the lead made once) and thread (its
        parent's, else the latest of its subject in that conversation, else its own)."""
        parents = {}
        wanted = [i for m in fresh for i in _parent_ids(m["fields"])]
        for doc in self.store.messages_by_ids(wanted, {"message_id": 1, "thread_id": 1,
                                                       "conversation_id": 1}):
            parents.setdefault(doc["message_id"], doc)
        convs = self.store.conversations_by(
            "_id", [p["conversation_id"] for p in parents.values()])
        contacts = self.ops.contacts_by_email([m["fields"]["from"]["address"] for m in fresh],
                                              known)
        keys = {}
        for address, contact in contacts.items():
            keys[address] = f"contact:{contact['id']}" if contact else f"email:{address}"
        by_key = self.store.conversations_by("key", list(keys.values()))
        stored_convs = set(convs) | {c["_id"] for c in by_key.values()}
        for item in fresh:
            fields = item["fields"]
            parent = next((parents[i] for i in _parent_ids(fields) if i in parents), None)
            item["thread"] = item["parent"] = None
            if parent is not None and parent["conversation_id"] in convs:
                conv = convs[parent["conversation_id"]]
                if parent.get("local"):  # its thread is known once the batch is stored
                    item["parent"] = parent["_id"]
                else:
                    item["thread"] = parent.get("thread_id") or parent["_id"]
            else:
                conv = self.sender_conversation(mailbox, fields, contacts, keys, by_key)
            item["conv"] = conv
            item["history"] = _is_history(mailbox, fields)
            item["new_conversation"] = conv["_id"] not in stored_convs
            convs[conv["_id"]] = conv
            item["msg"] = self.ops.inbound_doc(
                "email", item["key"], fields["text"], at=fields["date"] or utcnow(),
                mailbox_id=mailbox["_id"], message_id=fields["message_id"],
                in_reply_to=fields["in_reply_to"], references=fields["references"],
                subject=fields["subject"], html=fields["html"], to=fields["to"],
                cc=fields["cc"], imap_uid=item["uid"],
                **{"from": fields["from"]})
            if fields["message_id"]:  # a later message of the batch may answer this one
                parents[fields["message_id"]] = {"_id": item["msg"]["_id"], "local": True,
                                                 "conversation_id": conv["_id"]}
        return fresh

    def sender_conversation(self, mailbox, fields, contacts, keys, by_key):
        sender = fields["from"]
        address = sender["address"]
        key = keys[address]
        conv = by_key.get(key)
        if conv is None:
            contact = contacts[address]
            conv = (self.ops.new_conversation(key, contact,
                                              deal_id=self.ops.open_deal(contact["id"]))
                    if contact else self.ops.new_conversation(key,
                                                              contact_name=sender.get("name")))
            by_key[key] = conv
        # auto-replies, and the history found in the mailbox when it was connected (dated
        # well before: clocks and Date headers are loose), never become leads
        if not conv.get("contact_id") and mailbox.get("shared") and not fields["auto"] \
                and not _is_history(mailbox, fields):
            self.ops.capture_lead(conv, "email", key, {"email": address}, sender.get("name"),
                                  fields["subject"] + "\n\n" + (fields["text"] or ""),
                                  fields["message_id"] or new_id())
        return conv

    def keep_attachments(self, mailbox, attachments):
        kept = []
        for meta, data in attachments:
            meta = dict(meta, id=None)
            if data is not None:
                meta["id"] = new_id()
                self.store.put_attachment(meta["id"], data, dict(meta, mailbox_id=mailbox["_id"]))
            kept.append(meta)
        return kept

    def _record_batch(self, mailbox, uidvalidity, last_uid, plan):
        """In one transaction: new conversations, the messages not stored yet (checked
        again here), each conversation changed once, the mailbox's progress; the events."""
        ids = {}  # a planned conversation id -> the stored one (another writer may have won)
        stored_keys = self.store.stored_dedupe_keys([i["key"] for i in plan])
        plan = [i for i in plan if i["key"] not in stored_keys]
        convs = {}
        for item in plan:
            conv = item["conv"]
            if conv["_id"] in ids:
                continue
            stored = conv
            if item["new_conversation"]:
                stored, _ = self.store.insert_conversation_if_new(conv)
            ids[conv["_id"]] = stored["_id"]
            convs[stored["_id"]] = dict(stored, lead_request_id=stored.get(
                "lead_request_id") or conv.get("lead_request_id"))
        heads = self.store.thread_heads(list({
            _thread_key(ids[i["conv"]["_id"]], i["fields"]["subject"]) for i in plan
            if i["thread"] is None and i["parent"] is None} - {None}))
        docs, events, changes, threads = [], [], {}, {}
        for item in plan:
            conv = convs[ids[item["conv"]["_id"]]]
            msg = item["msg"]
            msg.update(conversation_id=conv["_id"], contact_id=conv.get("contact_id"),
                       deal_id=conv.get("deal_id"), uidvalidity=uidvalidity,
                       thread_key=_thread_key(conv["_id"], msg.get("subject")))
            thread = item["thread"] or threads.get(item["parent"]) or \
                heads.get(msg["thread_key"]) or msg["_id"]
            msg["thread_id"] = threads[msg["_id"]] = thread
            if msg["thread_key"]:
                heads[msg["thread_key"]] = thread
            docs.append(msg)
            change = changes.setdefault(conv["_id"], {"sets": {}, "at": msg["at"],
                                                      "waiting": conv.get("waiting")})
            sets = change["sets"]
            sets.update({"last_preview": preview(msg.get("text")), "status": "open",
                         "last_inbound_channel": "email", "last_inbound.email": msg["_id"],
                         "mailbox_id": mailbox["_id"]})
            if msg.get("subject"):
                sets["subject"] = msg["subject"]
            if not change["waiting"]:
                change["waiting"] = True
                sets.update(waiting=True, waiting_since=msg["at"])
                start = max(as_utc(msg["at"]), as_utc(mailbox["created_at"])) \
                    if mailbox.get("created_at") else as_utc(msg["at"])
                due = first_response_due(start, mailbox)
                if due is not None:
                    sets.update(first_response_due_at=due, escalate_at=due)
            change["at"] = max(as_utc(change["at"]), as_utc(msg["at"]))
        self.store.insert_messages(docs)
        now = utcnow()
        self.store.conversations_received(
            [(cid, dict(c["sets"], updated_at=now), c["at"]) for cid, c in changes.items()],
            "email")
        for cid, change in changes.items():
            conv = convs[cid]
            if conv.get("status") == "closed":
                events.append(conversation_event(
                    "conversation_reopened", dict(conv, **change["sets"]), None,
                    "The client wrote again: conversation reopened"))
        history = {}
        for item, msg in zip(plan, docs):
            conv = dict(convs[msg["conversation_id"]], **changes[msg["conversation_id"]]["sets"])
            if item["history"]:
                history.setdefault(msg["conversation_id"], (conv, []))[1].append(msg)
            else:
                events.append(message_event("message_received", msg, conv))
        events += [history_event(conv, msgs, mailbox) for conv, msgs in history.values()]
        for cid, conv in convs.items():
            events += self.ops.apply_pending_lead(cid, conv)
        doc = self.store.mailbox_progress(mailbox["_id"], uidvalidity, last_uid, len(docs))
        return doc, events


def _is_history(mailbox, fields):
    """Mail found in the mailbox when it was connected (dated well before: clocks and
    Date headers are loose): stored and threaded, but it is no news. It never becomes a
    lead and is announced once per conversation and batch (mail_history_synced), not
    message by message (no rule, notification or search update for each old mail)."""
    return fields["date"] is not None and mailbox.get("created_at") is not None and \
        fields["date"] < as_utc(mailbox["created_at"]) - HISTORY_MARGIN


def history_event(conv, msgs, mailbox):
    msgs = sorted(msgs, key=lambda m: as_utc(m["at"]))
    who = conv.get("contact_name") or (msgs[-1].get("from") or {}).get("address") or "a client"
    subject = msgs[-1].get("subject")
    summary = (f"{len(msgs)} e-mail{'s' if len(msgs) > 1 else ''} with {who} from the "
               f"mailbox's history" + (f": {subject}" if subject else ""))
    return conversation_event(
        "mail_history_synced", conv, None, summary[:500],
        {"deal_id": conv.get("deal_id"), "mailbox_id": mailbox["_id"], "count": len(msgs),
         "first_at": to_iso(msgs[0]["at"]), "last_at": to_iso(msgs[-1]["at"]),
         "message_ids": [m["_id"] for m in msgs]},
        event_id=f"{conv['_id']}:history:{msgs[0]['_id']}")


def _parent_ids(fields):
    return [i for i in [fields["in_reply_to"], *reversed(fields["references"])] if i]


def _thread_key(conversation_id, subject):
    key = mail.subject_key(subject)
    return f"{conversation_id}:{key}" if key else None
