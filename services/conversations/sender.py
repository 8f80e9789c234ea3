"""The outgoing queue: a message is stored `queued` (with its Message-ID) before anything is
sent; a sender claims due messages by lists with a lease, hands them to the mail server or
messenger over kept connections (a few lanes at once), then marks the sent ones in one
transaction with their `message_sent` events and their conversations' changes (one write
per conversation, none when nothing changes). A run goes on while messages keep coming
(`LINGER_S`), so a burst is sent on the same connections by large claims.

The marks below are kept in `send_marks` (one small document per message being sent, read
back when a message is claimed again, forgotten when it is sent or failed).

Exactly once across a crash, e-mail: `smtp_data_at` is written just before DATA (before it,
the server holds nothing: a sender taking over sends again) and `smtp_accepted_at` as soon
as the server said 250, then the copy is APPENDed to Sent.
- accepted: never handed over again (the copy in Sent is made if missing);
- DATA begun, acceptance not written (a crash or a lost answer in those milliseconds):
  found in Sent by its Message-ID (our copy, or the server's own save-to-Sent) it is sent;
  otherwise it is `unconfirmed`: never sent again by itself, a person decides.
Messengers and SMS have no idempotency key (Telegram's sendMessage, WhatsApp's /messages,
the SMS gateway): `http_started_at` is written before the call; a call that fails before
the connection is made is tried again; one that breaks after the request went, or a
sender that died inside it, leaves the message `unconfirmed` as well."""
import json
import logging
import os
import smtplib
import time
from datetime import timedelta

import eventlet
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from crm_common.group_commit import GroupCommit
from crm_common.ids import new_id
from crm_common.timeutil import as_utc, to_iso, utcnow
from services.conversations import mail
from services.conversations.operations import (TELEGRAM_API, WHATSAPP_API, message_event,
                                               preview, unseal)

log = logging.getLogger(__name__)
CLAIM = 100  # messages claimed at once
# messages claimed as they were queued that may wait for a process's run at most (fewer
# when its send rate would not begin them within a third of their lease: Workers.may_claim);
# a longer backlog stays due in the database
HANDED_OVER = 3 * CLAIM
LINGER_S = 0.5  # a run keeps its connections this long after the last due message
LINGER_POLL_S = 0.1


class Retry(Exception):
    """Not sent now, tried again later; `known`: the provider said so (a message that
    may have been taken keeps its marks)."""

    def __init__(self, reason, after_s=None, known=True):
        super().__init__(reason)
        self.after_s = after_s
        self.known = known


class Permanent(Exception):
    pass


class Sender:
    def __init__(self, store, announce, settings, holder, http=None, claimed=None, rate=None):
        self.store = store
        self.announce = announce
        self.settings = settings
        self.holder = holder
        self.http = http or requests.Session()
        # -> messages claimed as they were queued by this process (Workers.take_claimed)
        self.claimed = claimed
        self.rate = rate  # told (messages, seconds) of each list sent (Workers.note_rate)
        # the lanes' marks written together: a lane's mark is stored before it goes on,
        # the marks of the lanes that wait meanwhile in the next command (one command for
        # most of a run's lanes, where each mark was one)
        self._marks = GroupCommit(self._write_marks)
        # per run: connections by (mailbox, lane), so a burst logs in once per lane
        self._imap, self._smtp, self._mailboxes, self._channels = {}, {}, {}, {}

    def failpoint(self, name):
        if name in (self.settings.failpoints or "").split(","):
            log.error("failpoint %s: the process dies here", name)
            os._exit(17)

    def run_due(self, limit=500, linger_s=LINGER_S):
        """Sends what is due, again until nothing came for `linger_s`: what is queued
        meanwhile goes on the same connections, by larger claims."""
        done = 0
        idle_since = None
        try:
            while done < limit:
                lease = utcnow() + timedelta(seconds=self.settings.send_lease_s)
                claimed = self._claimed_at_queuing(min(CLAIM, limit - done))
                if len(claimed) < min(CLAIM, limit - done):
                    claimed += self.store.claim_sends(
                        utcnow(), lease, f"{self.holder}:{new_id()}",
                        min(CLAIM, limit - done) - len(claimed))
                if not claimed:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= linger_s:
                        break
                    time.sleep(LINGER_POLL_S)
                    continue
                idle_since = None
                began = time.monotonic()
                self.deliver_all(claimed)
                if self.rate is not None:
                    self.rate(len(claimed), time.monotonic() - began)
                done += len(claimed)
        finally:
            for conn in self._imap.values():
                mail.close(conn)
            for client in self._smtp.values():
                mail.smtp_close(client)
            self._imap, self._smtp, self._mailboxes, self._channels = {}, {}, {}, {}
        return done

    def _claimed_at_queuing(self, most=CLAIM):
        """What this process claimed as it queued it (no claim write: its lease was stored
        with it); one whose lease is ending is left to the claims once it is over (a
        sender that took it over meanwhile is alone: see _lease_ending)."""
        if self.claimed is None:
            return []
        fresh = []
        for msg in self.claimed(most):
            if not self._lease_ending(msg):
                fresh.append(msg)
            else:
                log.warning("message %s waited here until its lease was ending: left to "
                            "the claims", msg["_id"])
        return fresh

    def deliver_all(self, msgs):
        """Each mailbox's (or channel's) messages in up to `send_concurrency` lanes, one
        connection each; the sent ones marked together."""
        groups = {}
        for msg in msgs:
            groups.setdefault(msg.get("mailbox_id") or msg.get("channel_id"), []).append(msg)
        lanes = []
        width = max(1, self.settings.send_concurrency)
        for key, items in groups.items():
            count = min(width, len(items))
            lanes += [(key, n, items[n::count]) for n in range(count)]
        outcomes = []
        pool = eventlet.GreenPool(width)
        for lane in lanes:
            pool.spawn_n(self._lane, lane, outcomes)
        pool.waitall()
        sent = [(msg, external) for msg, external in outcomes if not isinstance(external,
                                                                                 Exception)]
        for start in range(0, len(sent), CLAIM):  # one transaction per claim
            self.announce(self._mark_sent, sent[start:start + CLAIM])
        for msg, exc in outcomes:
            if isinstance(exc, Exception):
                self._outcome_failed(msg, exc)

    def _lane(self, lane, outcomes):
        copies = []  # (mailbox, message, raw): the lane's Sent copies, made at its end
        for msg in lane[2]:
            if self._lease_ending(msg):
                # another sender may claim it any moment and would find no mark of it:
                # not begun here, it is left to the claims (neither sent nor failed)
                log.warning("message %s not begun: its lease is ending", msg["_id"])
                continue
            try:
                outcomes.append((msg, getattr(self, "_send_" + msg["channel"])(
                    msg, lane[:2], copies)))
            except Exception as exc:  # noqa: BLE001 - each message's outcome is recorded
                outcomes.append((msg, exc))
        if copies:
            self._copies_to_sent(copies, lane[:2])

    def _lease_ending(self, msg):
        due = msg.get("send_due_at")  # a claimed message's lease
        return due is not None and as_utc(due) - utcnow() < timedelta(
            seconds=min(5.0, self.settings.send_lease_s / 4))

    def deliver(self, msg):
        self.deliver_all([msg])

    def _outcome_failed(self, msg, exc):
        if isinstance(exc, mail.Unconfirmed):
            self.announce(self._mark_failed, msg["_id"], str(exc), "unconfirmed")
        elif isinstance(exc, Retry):
            self._failed(msg, str(exc), retry_after=exc.after_s, known=exc.known)
        elif isinstance(exc, (Permanent, mail.MailError)):
            self._failed(msg, str(exc), permanent=isinstance(exc, Permanent))
        else:  # where it broke is unknown: its marks stay (checked before sending again)
            log.error("sending %s failed", msg["_id"], exc_info=exc)
            self._failed(msg, f"{type(exc).__name__}: {exc}", known=False)

    def mark(self, message_id, sets, first=False):
        """A message's mark (store.mark_message), stored when this returns."""
        self._marks.submit((message_id, sets, first))

    def _write_marks(self, marks):
        self.store.mark_messages(marks)
        return [None] * len(marks)

    def _mark_sent(self, sent):
        now = utcnow()
        self.store.mark_sent([(msg["_id"], external) for msg, external in sent], now)
        self.store.forget_marks([msg["_id"] for msg, _ in sent])
        convs = self._follow([msg for msg, _ in sent], now, answered=True)
        events = []
        for msg, external in sent:
            msg = dict(msg, status="sent", sent_at=now, error=None, external_id=external)
            events.append(message_event("message_sent", msg, convs[msg["conversation_id"]],
                                        msg.get("sender_user_id"),
                                        {"contacted_at": to_iso(now)}))
        return None, events

    def _follow(self, msgs, now, answered):
        """The conversations of messages sent (`answered`: no longer waiting, no escalation
        due) or failed follow them: their latest message's time and preview, channel and
        mailbox; one write per conversation that changes, none for the others (a write
        rewrites every index entry of the conversation) -> {id: conversation as written}."""
        convs = self.store.conversations_by("_id", {msg["conversation_id"] for msg in msgs})
        changes = []
        for cid, conv in convs.items():
            update = followed(conv, [m for m in msgs if m["conversation_id"] == cid], answered,
                              now)
            if update:
                changes.append((cid, update))
        self.store.conversations_followed(changes)
        return convs

    def _failed(self, msg, reason, permanent=False, retry_after=None, known=True):
        """`known`: the server or provider refused it, so nothing went out."""
        attempts = msg.get("attempts", 1)
        if permanent or attempts >= self.settings.send_attempts:
            self.announce(self._mark_failed, msg["_id"], reason)
            return
        wait = retry_after or min(5 * 2 ** (attempts - 1), 600)
        if known:  # nothing went out: sent again from the start
            self.store.forget_marks([msg["_id"]])
        self.store.message_update(msg["_id"], {
            "status": "queued", "error": reason[:1000],
            "send_due_at": utcnow() + timedelta(seconds=wait)},
            unset=["holder"] + (["smtp_data_at", "http_started_at"] if known else []),
            read_back=False)

    def _mark_failed(self, message_id, reason, status="failed"):
        msg = self.store.message_update(message_id, {"status": status, "error": reason[:1000]},
                                        unset=["send_due_at", "holder"])
        if status == "failed":  # an unconfirmed one keeps them: a person decides
            self.store.forget_marks([message_id])
        conv = self._follow([msg], utcnow(), answered=False)[msg["conversation_id"]]
        return msg, [message_event("message_failed", msg, conv, msg.get("sender_user_id"),
                                   {"error": reason[:1000]})]

    # e-mail
    def _mailbox(self, mailbox_id):
        if mailbox_id not in self._mailboxes:
            self._mailboxes[mailbox_id] = self.store.get("mailboxes", mailbox_id)
        return self._mailboxes[mailbox_id]

    def _send_email(self, msg, lane, copies):
        """`copies`: the lane's Sent copies, which this message's joins (made after the
        lane's last message: _copies_to_sent)."""
        mailbox = self._mailbox(msg["mailbox_id"])
        if mailbox is None:
            raise Permanent("its mailbox was removed")
        sent_folder = mailbox.get("sent_folder") or "Sent"
        if msg.get("smtp_accepted_at"):  # taken over after the server took it
            copies.append((mailbox, msg, None))  # its copy, if it is missing
            return msg["message_id"]
        if msg.get("smtp_data_at"):  # a sender died while the server was taking it
            if self._in_sent(mailbox, msg, lane):
                return msg["message_id"]
            raise mail.Unconfirmed(
                "the service stopped while the mail server was taking this message and its "
                f"copy is not in {sent_folder}: it may have been sent; not sent again")
        built = self._build(mailbox, msg)
        self._smtp_send(mailbox, lane, built, msg["_id"])
        raw = bytes(built)
        self.failpoint("after_data")
        self.mark(msg["_id"], {"smtp_accepted_at": utcnow(), "raw_size": len(raw)})
        self.failpoint("after_smtp")
        copies.append((mailbox, msg, raw))
        return msg["message_id"]

    def _build(self, mailbox, msg):
        return mail.build(mailbox, msg["to"], msg.get("subject"), msg.get("text"),
                          msg.get("html"), msg["message_id"], msg.get("in_reply_to"),
                          msg.get("references") or [], self._attachments(msg))

    def _attachments(self, msg):
        found = []
        for meta in msg.get("attachments") or []:
            data = self.store.get_attachment(meta["id"]) if meta.get("id") else None
            if data is not None:
                found.append((meta, data[0]))
        return found

    def _copies_to_sent(self, copies, lane):
        """The Sent copies of a lane's accepted messages (one mailbox), in one APPEND
        (mail.append_many); a message taken over after its acceptance (raw None) gets one
        only if it is not there yet. They come after the acceptances, so a sender taking
        over an accepted message makes its copy if it is missing; a missing copy never
        unsends a mail."""
        mailbox = copies[0][0]
        folder = mailbox.get("sent_folder") or "Sent"
        try:
            conn = self._imap_conn(mailbox, lane)
            raws = []
            for _, msg, raw in copies:
                if raw is None:
                    if mail.has_message_id(conn, folder, msg["message_id"]):
                        continue
                    raw = bytes(self._build(mailbox, msg))
                raws.append(raw)
            if raws:
                mail.append_many(conn, folder, raws)
        except Exception as exc:  # noqa: BLE001 - sent all the same: the copies are missing
            self._drop_imap(lane)
            log.warning("messages %s sent; their copies in %s failed: %s",
                        [msg["_id"] for _, msg, _ in copies], folder, exc)
        self.failpoint("after_append")

    def _in_sent(self, mailbox, msg, lane):
        try:
            conn = self._imap_conn(mailbox, lane)
            return mail.has_message_id(conn, mailbox.get("sent_folder") or "Sent",
                                       msg["message_id"])
        except Exception as exc:  # noqa: BLE001 - no proof either way: not now
            self._drop_imap(lane)
            raise Retry(f"cannot check the Sent folder for a message that may have been sent "
                        f"({type(exc).__name__}: {exc})", known=False)

    def _imap_conn(self, mailbox, lane):
        conn = self._imap.get(lane)
        if conn is None:
            imap = mailbox["imap"]
            conn = mail.imap_connect(imap, unseal(imap.get("password")), self.settings.timeout_s)
            self._imap[lane] = conn
        return conn

    def _drop_imap(self, lane):
        conn = self._imap.pop(lane, None)
        if conn is not None:
            mail.close(conn)

    def _smtp_send(self, mailbox, lane, built, message_id):
        smtp = mailbox["smtp"]

        def before_data():
            self.mark(message_id, {"smtp_data_at": utcnow()}, first=True)

        for attempt in (1, 2):
            client = self._smtp.get(lane)
            fresh = client is None
            if fresh:
                client = mail.smtp_open(smtp, unseal(smtp.get("password")),
                                        self.settings.timeout_s)
                self._smtp[lane] = client
            try:
                mail.smtp_deliver(client, built, before_data)
                return
            except smtplib.SMTPServerDisconnected as exc:  # before DATA: nothing sent
                self._smtp.pop(lane, None)
                if fresh or attempt == 2:
                    raise mail.MailError(f"SMTP server disconnected: {exc}")
            except mail.MailError:
                self._smtp.pop(lane, None)
                mail.smtp_close(client)
                raise

    # messengers and SMS (their documented request and answer formats)
    def _channel(self, msg):
        """The message's channel and its secrets, read once per run (as mailboxes are)."""
        key = msg.get("channel_id")
        if key not in self._channels:
            channel = self.store.get("channels", key)
            self._channels[key] = None if channel is None else (
                channel, {k: unseal(v) for k, v in (channel.get("secrets") or {}).items()})
        if self._channels[key] is None:
            raise Permanent("its channel was removed")
        return self._channels[key]

    def _started(self, msg):
        """Before a call that cannot be taken back: a sender that dies inside it leaves
        the message unconfirmed, never sent twice."""
        if msg.get("http_started_at"):
            raise mail.Unconfirmed("the service stopped during the call to the provider: "
                                   "the message may have been sent; not sent again")
        self.mark(msg["_id"], {"http_started_at": utcnow()}, first=True)

    def _post(self, url, body, headers=None):
        try:
            return self.http.post(url, json=body, headers=headers or {},
                                  timeout=self.settings.timeout_s)
        except requests.RequestException as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(exc, requests.ConnectTimeout) or \
                    isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
                raise Retry(f"unreachable: {exc}")  # no connection: nothing was sent
            raise mail.Unconfirmed(f"the call broke after the request went: {exc}")

    def _send_telegram(self, msg, lane=None, copies=None):
        self._started(msg)
        channel, secrets = self._channel(msg)
        base = (channel.get("api_base") or TELEGRAM_API).rstrip("/")
        answer = self._post(f"{base}/bot{secrets.get('token') or ''}/sendMessage",
                            {"chat_id": msg["to"][0]["address"], "text": msg.get("text") or ""})
        body = _json(answer)
        if answer.status_code == 429 or body.get("error_code") == 429:
            raise Retry("Telegram: too many requests",
                        (body.get("parameters") or {}).get("retry_after"))
        if answer.status_code >= 500:
            raise Retry(f"Telegram answered {answer.status_code}")
        if not body.get("ok"):
            raise Permanent(f"Telegram: {body.get('description') or answer.status_code}")
        return str((body.get("result") or {}).get("message_id") or "")

    def _send_whatsapp(self, msg, lane=None, copies=None):
        self._started(msg)
        channel, secrets = self._channel(msg)
        base = (channel.get("api_base") or WHATSAPP_API).rstrip("/")
        to = msg["to"][0]["address"]
        if msg.get("template"):
            params = [{"type": "text", "text": str(v)} for v in (msg.get("variables") or {}).values()]
            body = {"messaging_product": "whatsapp", "to": to, "type": "template",
                    "template": {"name": msg["template"],
                                 "language": {"code": msg.get("language") or "en_US"},
                                 **({"components": [{"type": "body", "parameters": params}]}
                                    if params else {})}}
        else:
            body = {"messaging_product": "whatsapp", "to": to, "type": "text",
                    "text": {"body": msg.get("text") or ""}}
        answer = self._post(f"{base}/{channel.get('phone_number_id')}/messages", body,
                            {"Authorization": f"Bearer {secrets.get('token') or ''}"})
        found = _json(answer)
        error = found.get("error") or {}
        if answer.status_code == 429 or error.get("code") in (4, 80007, 130429, 131048, 131056):
            raise Retry(f"WhatsApp: rate limited ({error.get('message') or answer.status_code})")
        if answer.status_code >= 500:
            raise Retry(f"WhatsApp answered {answer.status_code}")
        if answer.status_code >= 400 or error:
            raise Permanent(f"WhatsApp: {error.get('message') or answer.status_code} "
                            f"(code {error.get('code')})")
        return ((found.get("messages") or [{}])[0]).get("id")

    def _send_sms(self, msg, lane=None, copies=None):
        self._started(msg)
        channel, secrets = self._channel(msg)
        if not channel.get("url"):
            raise Permanent("the SMS channel has no URL")
        headers = {}
        if secrets.get("token"):
            token = secrets["token"]
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        answer = self._post(channel["url"], {"to": msg["to"][0]["address"],
                                             "text": msg.get("text") or "",
                                             "from": channel.get("from_number")}, headers)
        if answer.status_code == 429 or answer.status_code >= 500:
            raise Retry(f"SMS gateway answered {answer.status_code}")
        if answer.status_code >= 400:
            raise Permanent(f"SMS gateway refused it ({answer.status_code})")
        return str(_json(answer).get("id") or "") or None


def followed(conv, msgs, answered, now):
    """The change of `conv` (made in place too) after its messages `msgs` were sent or
    failed (store.conversations_followed); None when nothing changes. The preview moves only to a message later than the
    conversation's latest (a retried one sent after the client wrote again does not)."""
    sets, unset, add, later = {}, [], [], None
    latest = max(msgs, key=lambda m: m["at"])
    last = conv.get("last_message_at")
    if last is None or as_utc(latest["at"]) > as_utc(last):
        later = latest["at"]
    if last is None or as_utc(latest["at"]) >= as_utc(last):
        sets["last_preview"] = preview(latest.get("text"))
        if latest["channel"] == "email" and latest.get("mailbox_id"):
            sets["mailbox_id"] = latest["mailbox_id"]
    for channel in dict.fromkeys(m["channel"] for m in msgs):
        if channel not in (conv.get("channels") or []):
            add.append(channel)
    if answered and (conv.get("waiting") or conv.get("waiting_since")):
        sets.update(waiting=False, waiting_since=None)
    if answered:
        unset = [k for k in ("escalate_at", "first_response_due_at") if k in conv]
    sets = {k: v for k, v in sets.items() if conv.get(k) != v}
    if not (sets or unset or add or later):
        return None
    sets["updated_at"] = now
    conv.update(sets, channels=(conv.get("channels") or []) + add)
    for key in unset:
        conv.pop(key, None)
    if later:
        conv["last_message_at"] = later
    return {"sets": sets, "unset": unset, "channels": add, "last_message_at": later}


def _json(answer):
    try:
        found = answer.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}
