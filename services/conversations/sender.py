"""The outgoing queue: a message is stored `queued` (with its Message-ID) before anything is
sent; a sender claims it with a lease, hands it to the mail server or messenger, then marks
it sent and announces message_sent. Exactly once across a crash:
- the SMTP server's acceptance is written on the message at once (`smtp_accepted_at`),
  so a sender taking over after a crash never hands it over again;
- a claim of a message that was already tried first looks for its Message-ID in the
  mailbox's Sent folder (where the copy is APPENDed right after sending): found, it is
  sent, nothing goes out again.
Messengers and SMS have no such proof; their window is the one HTTP call."""
import json
import logging
import os
import smtplib
from datetime import timedelta

import requests

from crm_common.timeutil import to_iso, utcnow
from services.conversations import mail
from services.conversations.operations import message_event, unseal

log = logging.getLogger(__name__)
TELEGRAM_API = "https://api.telegram.org"
WHATSAPP_API = "https://graph.facebook.com/v19.0"


class Retry(Exception):
    def __init__(self, reason, after_s=None):
        super().__init__(reason)
        self.after_s = after_s


class Permanent(Exception):
    pass


class Sender:
    def __init__(self, store, announce, settings, holder, http=None):
        self.store = store
        self.announce = announce
        self.settings = settings
        self.holder = holder
        self.http = http or requests.Session()
        # connections kept for one run (a burst to one mailbox logs in once)
        self._imap, self._smtp = {}, {}

    def failpoint(self, name):
        if name in (self.settings.failpoints or "").split(","):
            log.error("failpoint %s: the process dies here", name)
            os._exit(17)

    def run_due(self, limit=50):
        done = 0
        try:
            # again until nothing is due: what was queued meanwhile goes on these connections
            while done < limit:
                due = self.store.due_sends(utcnow(), min(50, limit - done))
                claimed = 0
                for doc in due:
                    lease = utcnow() + timedelta(seconds=self.settings.send_lease_s)
                    if self.store.claim_send(doc["_id"], doc["send_due_at"], lease, self.holder):
                        self.deliver(self.store.get("messages", doc["_id"]))
                        claimed += 1
                done += claimed
                if not claimed:
                    break
        finally:
            for conn in self._imap.values():
                mail.close(conn)
            for client in self._smtp.values():
                mail.smtp_close(client)
            self._imap, self._smtp = {}, {}
        return done

    def _imap_conn(self, mailbox):
        conn = self._imap.pop(mailbox["_id"], None)
        if conn is not None:
            try:
                conn.noop()
                self._imap[mailbox["_id"]] = conn
                return conn
            except Exception:  # noqa: BLE001 - stale: open another
                mail.close(conn)
        imap = mailbox["imap"]
        conn = mail.imap_connect(imap, unseal(imap.get("password")), self.settings.timeout_s)
        self._imap[mailbox["_id"]] = conn
        return conn

    def _drop_imap(self, mailbox):
        conn = self._imap.pop(mailbox["_id"], None)
        if conn is not None:
            mail.close(conn)

    def _smtp_send(self, mailbox, built):
        smtp = mailbox["smtp"]
        for attempt in (1, 2):
            client = self._smtp.get(mailbox["_id"])
            fresh = client is None
            if fresh:
                client = mail.smtp_open(smtp, unseal(smtp.get("password")), self.settings.timeout_s)
                self._smtp[mailbox["_id"]] = client
            try:
                mail.smtp_deliver(client, built)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp.pop(mailbox["_id"], None)
                if fresh or attempt == 2:
                    raise mail.MailError(f"SMTP server disconnected: {exc}")
            except mail.MailError:
                self._smtp.pop(mailbox["_id"], None)
                mail.smtp_close(client)
                raise

    def deliver(self, msg):
        try:
            external = getattr(self, "_send_" + msg["channel"])(msg)
        except Retry as exc:
            self._failed(msg, str(exc), retry_after=exc.after_s)
            return
        except (Permanent, mail.MailError) as exc:
            permanent = isinstance(exc, Permanent)
            self._failed(msg, str(exc), permanent=permanent)
            return
        except Exception as exc:  # noqa: BLE001 - recorded on the message, tried again
            log.exception("sending %s failed", msg["_id"])
            self._failed(msg, f"{type(exc).__name__}: {exc}")
            return
        self.announce(self._mark_sent, msg["_id"], external)

    def _mark_sent(self, message_id, external):
        now = utcnow()
        msg = self.store.message_update(message_id, {
            "status": "sent", "sent_at": now, "error": None, "external_id": external},
            unset=["send_due_at", "holder"])
        conv = self.store.touch_conversation(msg["conversation_id"], {
            "waiting": False, "waiting_since": None, "updated_at": now},
            unset=["escalate_at", "first_response_due_at"])
        return msg, [message_event("message_sent", msg, conv, msg.get("sender_user_id"),
                                   {"contacted_at": to_iso(now)})]

    def _failed(self, msg, reason, permanent=False, retry_after=None):
        attempts = msg.get("attempts", 1)
        if permanent or attempts >= self.settings.send_attempts:
            self.announce(self._mark_failed, msg["_id"], reason)
            return
        wait = retry_after or min(5 * 2 ** (attempts - 1), 600)
        self.store.message_update(msg["_id"], {
            "status": "queued", "error": reason[:1000],
            "send_due_at": utcnow() + timedelta(seconds=wait)}, unset=["holder"])

    def _mark_failed(self, message_id, reason):
        msg = self.store.message_update(message_id, {"status": "failed", "error": reason[:1000]},
                                        unset=["send_due_at", "holder"])
        conv = self.store.get("conversations", msg["conversation_id"])
        return msg, [message_event("message_failed", msg, conv, msg.get("sender_user_id"),
                                   {"error": reason[:1000]})]

    # e-mail
    def _send_email(self, msg):
        mailbox = self.store.get("mailboxes", msg["mailbox_id"])
        if mailbox is None:
            raise Permanent("its mailbox was removed")
        if not msg.get("smtp_accepted_at"):
            if msg.get("attempts", 1) > 1 and self._in_sent(mailbox, msg):
                return msg["message_id"]
            attachments = []
            for meta in msg.get("attachments") or []:
                found = self.store.get_attachment(meta["id"])
                if found is not None:
                    attachments.append((meta, found[0]))
            built = mail.build(mailbox, msg["to"], msg.get("subject"), msg.get("text"),
                               msg.get("html"), msg["message_id"], msg.get("in_reply_to"),
                               msg.get("references") or [], attachments)
            self._smtp_send(mailbox, built)
            self.store.message_update(msg["_id"], {"smtp_accepted_at": utcnow(),
                                                   "raw_size": len(bytes(built))})
            self.failpoint("after_smtp")
            raw = bytes(built)
        else:
            raw = None
        try:
            conn = self._imap_conn(mailbox)
            if raw is None:
                if mail.has_message_id(conn, mailbox.get("sent_folder") or "Sent",
                                       msg["message_id"]):
                    return msg["message_id"]
                raw = bytes(self._rebuild(mailbox, msg))
            mail.append(conn, mailbox.get("sent_folder") or "Sent", raw)
        except Exception as exc:  # noqa: BLE001 - sent all the same: the copy is what is missing
            self._drop_imap(mailbox)
            log.warning("message %s sent; its copy in Sent failed: %s", msg["_id"], exc)
        self.failpoint("after_append")
        return msg["message_id"]

    def _rebuild(self, mailbox, msg):
        attachments = [(meta, (self.store.get_attachment(meta["id"]) or [b""])[0])
                       for meta in msg.get("attachments") or []]
        return mail.build(mailbox, msg["to"], msg.get("subject"), msg.get("text"),
                          msg.get("html"), msg["message_id"], msg.get("in_reply_to"),
                          msg.get("references") or [], attachments)

    def _in_sent(self, mailbox, msg):
        try:
            conn = self._imap_conn(mailbox)
            return mail.has_message_id(conn, mailbox.get("sent_folder") or "Sent",
                                       msg["message_id"])
        except Exception:  # noqa: BLE001 - no proof either way: not now
            self._drop_imap(mailbox)
            raise Retry("cannot check the Sent folder before sending again")

    # messengers and SMS (their documented request and answer formats)
    def _channel(self, msg):
        channel = self.store.get("channels", msg.get("channel_id"))
        if channel is None:
            raise Permanent("its channel was removed")
        return channel, {k: unseal(v) for k, v in (channel.get("secrets") or {}).items()}

    def _post(self, url, body, headers=None):
        try:
            return self.http.post(url, json=body, headers=headers or {},
                                  timeout=self.settings.timeout_s)
        except requests.RequestException as exc:
            raise Retry(f"unreachable: {exc}")

    def _send_telegram(self, msg):
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

    def _send_whatsapp(self, msg):
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

    def _send_sms(self, msg):
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


def _json(answer):
    try:
        found = answer.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}
