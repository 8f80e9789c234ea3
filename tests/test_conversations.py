"""Conversations through the real stack: a real Dovecot (IMAP with STARTTLS, IDLE) and an
SMTP server delivering into it, local receivers following the Telegram Bot API and the
WhatsApp Cloud API formats."""
import email
import email.utils
import hashlib
import hmac
import json
import time
import uuid

from datetime import timedelta

import pytest
import requests

from crm_common import config
from crm_common.config import load_settings
from contracts.telephony_webhooks import twilio_signature
from crm_common.timeutil import utcnow
from services.conversations import mail as mail_module
from services.conversations.sender import Sender
from services.conversations.store import ConversationsStore
from tests.fake_receivers import HttpRecorder
from tests.mail_servers import Dovecot, SmtpRelay

SALES, CLIENT, CLIENT2, PERSONAL = ("sales@crm.test", "anna@client.test", "bob@client.test",
                                    "me@crm.test")


def wait(predicate, timeout=30, interval=0.2):
    deadline = time.time() + timeout
    while True:
        found = predicate()
        if found or time.time() > deadline:
            return found
        time.sleep(interval)


@pytest.fixture(scope="module")
def mail():
    dovecot = Dovecot({SALES: "sales-pw", CLIENT: "anna-pw", CLIENT2: "bob-pw",
                       PERSONAL: "me-pw"}).start()
    relay = SmtpRelay(dovecot).start()
    try:
        yield dovecot, relay
    finally:
        relay.stop()
        dovecot.stop()


@pytest.fixture(scope="module")
def shared_mailbox(stack, mail):
    dovecot, relay = mail
    api = stack.sign_in()
    answer = api.post("/mailboxes", json=mailbox_body(dovecot, relay, SALES, "sales-pw",
                                                      shared=True))
    assert answer.status_code == 201, answer.text
    return answer.json()


def mailbox_body(dovecot, relay, address, password, **extra):
    return {"name": address, "address": address, "display_name": "Sales team",
            "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "starttls",
                     "username": address, "password": password, "verify_tls": False},
            "smtp": {"host": "127.0.0.1", "port": relay.port, "security": "none",
                     "username": address, "password": password},
            "poll_seconds": 2, **extra}


def raw_mail(sender, to, subject, text, message_id, in_reply_to=None, html=None,
             attachment=None, name="Anna Client", date=None):
    msg = email.message.EmailMessage()
    msg["From"] = email.utils.formataddr((name, sender))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = email.utils.formatdate(date)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="offer.pdf")
    return msg.as_bytes()


def conversation_of(api, contact_id):
    items = api.get("/conversations", params={"contact_id": contact_id}).json()["items"]
    return items[0] if items else None


def messages_of(api, conversation_id):
    return api.get(f"/conversations/{conversation_id}/messages").json()["items"]


def test_shared_mailbox_lead_reply_threads_and_second_mail(stack, api, mail, shared_mailbox,
                                                           unique):
    dovecot, relay = mail
    first_id = f"<first-{unique}@client.test>"
    dovecot.deliver(SALES, raw_mail(
        CLIENT, SALES, "Price request", "How much for 10 units?", first_id,
        html='<p>How much?</p><script>alert(1)</script><img src=x onerror="alert(2)">',
        attachment=b"%PDF-1.4 offer"))
    # the unknown sender becomes a lead (through the capture path), its mail a thread
    contact = wait(lambda: (api.get("/contacts/lookup", params={"email": CLIENT}).json()
                            .get("items") or [None])[0], timeout=40)
    assert contact, "no lead for the unknown sender"
    assert contact["status"] == "lead"
    conv = wait(lambda: conversation_of(api, contact["id"]), timeout=30)
    assert conv, list(stack.db("conversations").conversations.find({}, {"key": 1}))
    assert conv["waiting_since"] and conv["status"] == "open"
    assert "email" in conv["channels"]
    [first] = messages_of(api, conv["id"])
    assert first["direction"] == "inbound" and first["message_id"] == first_id
    assert "script" not in first["html"] and "onerror" not in first["html"]
    assert "How much for 10 units?" in first["text"]
    [attachment] = first["attachments"]
    content = api.get(f"/conversations/{conv['id']}/attachments/{attachment['id']}")
    assert content.status_code == 200 and content.content == b"%PDF-1.4 offer"
    # the manager answers from the CRM: threaded under the client's mail, a copy in Sent
    answer = api.post(f"/conversations/{conv['id']}/messages",
                      json={"body": "Hello {{contact.first_name}}, 100 EUR each."})
    assert answer.status_code == 202, answer.text
    sent = answer.json()
    assert sent["status"] == "queued" and sent["message_id"]
    got = dovecot.wait_messages(CLIENT, 1)
    assert len(got) == 1
    reply = got[0]
    assert reply["In-Reply-To"] == first_id and first_id in reply["References"]
    assert reply["Subject"] == "Re: Price request"
    assert reply["Message-ID"] == sent["message_id"]
    assert "Hello Anna, 100 EUR each." in reply.get_body(("plain",)).get_content()
    copies = dovecot.wait_messages(SALES, 1, folder="Sent")
    assert [c["Message-ID"] for c in copies] == [sent["message_id"]]
    stored = wait(lambda: [m for m in messages_of(api, conv["id"])
                           if m["id"] == sent["id"] and m["status"] == "sent"])
    assert stored
    assert wait(lambda: not api.get(f"/conversations/{conv['id']}").json()["waiting_since"])
    # the client answers in their mail client: the same conversation and thread
    dovecot.deliver(SALES, raw_mail(CLIENT, SALES, "Re: Price request", "OK, deal.",
                                    f"<second-{unique}@client.test>",
                                    in_reply_to=sent["message_id"]))
    both = wait(lambda: [m for m in messages_of(api, conv["id"])
                         if m["direction"] == "inbound"] if len(
        [m for m in messages_of(api, conv["id"]) if m["direction"] == "inbound"]) == 2 else None)
    assert both, messages_of(api, conv["id"])
    assert len({m["thread_id"] for m in both}) == 1
    # the lead's deal (routed by the defaults) is linked to the conversation
    assert wait(lambda: api.get(f"/conversations/{conv['id']}").json()["deal_id"], timeout=20)
    # the lead was made once; the reply is on the contact's timeline and touched it
    assert len(api.get("/contacts/lookup", params={"email": CLIENT}).json()["items"]) == 1
    timeline = wait(lambda: [e for e in api.get(f"/contacts/{contact['id']}/timeline").json()[
        "items"] if e["kind"] == "message_sent"])
    assert timeline and timeline[0]["ref"]["id"] == sent["id"]
    assert wait(lambda: api.get(f"/contacts/{contact['id']}").json()["last_contacted_at"])
    # the same mail again (a second delivery) is not stored twice
    dovecot.deliver(SALES, raw_mail(CLIENT, SALES, "Price request", "dup", first_id))
    api.post(f"/mailboxes/{shared_mailbox['id']}/sync")
    time.sleep(3)
    assert len([m for m in messages_of(api, conv["id"]) if m["direction"] == "inbound"]) == 2


def test_mailbox_secrets_are_never_returned_and_bad_login_is_shown(stack, api, mail,
                                                                  shared_mailbox):
    dovecot, relay = mail
    listed = api.get("/mailboxes")
    assert listed.status_code == 200
    assert "sales-pw" not in listed.text and "password\"" not in listed.text.replace(
        "password_set", "")
    bad = api.post("/mailboxes", json=mailbox_body(dovecot, relay, PERSONAL, "wrong"))
    assert bad.status_code == 201, bad.text
    state = wait(lambda: (lambda s: s if s["status"] == "error" else None)(
        api.get(f"/mailboxes/{bad.json()['id']}").json()["state"]), timeout=20)
    assert state and "login" in state["last_error"].lower() and state["failures"] >= 1
    assert state["next_sync_at"]
    # the shared mailbox keeps working beside it
    shared = api.get(f"/mailboxes/{shared_mailbox['id']}").json()["state"]
    assert shared["status"] == "ok" and shared["idle"] is True  # Dovecot offers IDLE
    assert api.post("/mailboxes", json={"name": "x"}).status_code == 422
    api.delete(f"/mailboxes/{bad.json()['id']}")


def test_history_found_in_a_new_mailbox_is_announced_per_conversation(stack, api, mail,
                                                                      record_events, unique):
    """Mail dated before the mailbox was connected is stored and threaded like any other,
    but announced once per conversation and batch (mail_history_synced: on the contact's
    timeline, no message_received for each old mail); newer mail is news as before."""
    dovecot, relay = mail
    client = f"hist{unique}@client.test"
    contact = api.post("/contacts", json={"first_name": "Old", "emails": [client]}).json()
    last_year = time.time() - 365 * 86400
    for n in range(3):
        dovecot.deliver(PERSONAL, raw_mail(client, PERSONAL, f"Old question {unique}",
                                           f"old text {n}", f"<old{n}-{unique}@client.test>",
                                           name="Old Client", date=last_year + n))
    dovecot.deliver(PERSONAL, raw_mail(client, PERSONAL, f"New question {unique}", "new text",
                                       f"<new-{unique}@client.test>", name="Old Client"))
    events = record_events("conversations")
    box = api.post("/mailboxes", json=mailbox_body(dovecot, relay, PERSONAL, "me-pw"))
    assert box.status_code == 201, box.text
    try:
        conv = wait(lambda: (lambda c: c if c and len(messages_of(api, c["id"])) == 4
                             else None)(conversation_of(api, contact["id"])), timeout=40)
        assert conv, conversation_of(api, contact["id"])
        stored = messages_of(api, conv["id"])
        old = [m for m in stored if m["subject"] == f"Old question {unique}"]
        assert len(old) == 3 and len({m["thread_id"] for m in old}) == 1
        found = events.wait_for(lambda e: e["data"].get("conversation_id") == conv["id"] and
                                e["type"] == "mail_history_synced", timeout=20)
        assert found, events.events
        [history] = found
        assert history["data"]["count"] == 3 and history["data"]["contact_id"] == contact["id"]
        assert sorted(history["data"]["message_ids"]) == sorted(m["id"] for m in old)
        assert history["data"]["mailbox_id"] == box.json()["id"]
        events.drain(2)
        received = [e for e in events.events if e["type"] == "message_received"
                    and e["data"]["conversation_id"] == conv["id"]]
        assert [e["data"]["subject"] for e in received] == [f"New question {unique}"]
        timeline = wait(lambda: [i for i in api.get(f"/contacts/{contact['id']}/timeline").json()
                                 ["items"] if "history" in (i.get("summary") or "")])
        assert timeline and "3 e-mails" in timeline[0]["summary"], timeline
    finally:
        api.delete(f"/mailboxes/{box.json()['id']}")


def test_do_not_contact_and_opt_outs_refuse_sending(stack, api, shared_mailbox, unique):
    contact = api.post("/contacts", json={"first_name": "Quiet", "emails": [
        f"quiet-{unique}@client.test"], "do_not_contact": True}).json()
    answer = api.post(f"/contacts/{contact['id']}/messages", json={"body": "Hi"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["details"]["reason"] == "do_not_contact"
    opted = api.post("/contacts", json={"first_name": "NoSms", "phones": ["+393471230000"],
                                        "emails": [f"nosms-{unique}@client.test"],
                                        "custom": {"opt_outs": ["sms"]}}).json()
    answer = api.post(f"/contacts/{opted['id']}/messages", json={"channel": "sms", "body": "x"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["details"] == {"reason": "opted_out", "channel": "sms",
                                                 "contact_id": opted["id"]}
    with pytest.raises(Exception) as refused:
        stack.rpc.call("conversations", "send_to_contact", contact["id"], "email", "Hi")
    assert "do_not_contact" in str(refused.value) or "contacted" in str(refused.value)


def test_automation_rpc_sends_once_per_idempotency_key(stack, api, mail, shared_mailbox, unique):
    dovecot, relay = mail
    address = f"auto-{unique}@client.test"
    contact = api.post("/contacts", json={"first_name": "Auto", "emails": [address]}).json()
    key = f"rule-{unique}"
    first = stack.rpc.call("conversations", "send_to_contact", contact["id"], "email",
                           "Welcome {{contact.first_name}}", subject="Welcome",
                           idempotency_key=key)
    again = stack.rpc.call("conversations", "send_to_contact", contact["id"], "email",
                           "Welcome {{contact.first_name}}", subject="Welcome",
                           idempotency_key=key)
    assert first["id"] == again["id"]
    assert wait(lambda: relay.to(address))
    time.sleep(1.5)
    assert len(relay.to(address)) == 1
    assert b"Welcome Auto" in relay.to(address)[0]["raw"]


def test_a_campaign_mail_is_in_the_conversation_and_its_reply_threads(stack, api, mail,
                                                                      shared_mailbox, unique):
    """automation's campaign sends through send_to_contact: the mail is the client's
    conversation's, and the client's reply joins it in the same thread."""
    dovecot, relay = mail
    address = f"camp-{unique}@client.test"
    contact = api.post("/contacts", json={"first_name": "Carla", "emails": [address],
                                          "tags": [f"camp{unique}"]}).json()
    segment = api.post("/segments", json={"name": f"c {unique}",
                                          "filters": {"tag": f"camp{unique}"}}).json()
    campaign = api.post("/campaigns", json={
        "name": f"News {unique}", "segment_id": segment["id"], "channel": "email",
        "subject": f"News {unique}", "body": "Hi {{ contact.first_name }} {{ unsubscribe_url }}"})
    assert campaign.status_code == 201, campaign.text
    assert api.post(f"/campaigns/{campaign.json()['id']}/send", json={}).status_code == 200
    [sent] = wait(lambda: relay.to(address), timeout=40)
    mailed = email.message_from_bytes(sent["raw"])
    conv = conversation_of(api, contact["id"])
    [ours] = [m for m in messages_of(api, conv["id"]) if m["direction"] == "outbound"]
    assert ours["message_id"] == mailed["Message-ID"] and ours["subject"] == f"News {unique}"
    login = email.utils.parseaddr(mailed["From"])[1]
    dovecot.deliver(login, raw_mail(address, login, f"Re: News {unique}", "Tell me more",
                                    f"<camp-reply-{unique}@client.test>",
                                    in_reply_to=mailed["Message-ID"], name="Carla"))
    replies = wait(lambda: [m for m in messages_of(api, conv["id"])
                            if m["direction"] == "inbound"], timeout=40)
    assert [m["text"].strip() for m in replies] == ["Tell me more"]
    assert replies[0]["thread_id"] == ours["thread_id"] and ours["thread_id"]
    assert len(api.get("/conversations", params={"contact_id": contact["id"]}).json()["items"]) == 1


@pytest.fixture(scope="module")
def providers():
    recorder = HttpRecorder().start()
    try:
        yield recorder
    finally:
        recorder.stop()


def signed(secret, body):
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" +
                 hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()}


def whatsapp_message(phone_number_id, wa_id, text, name="Anna"):
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}",
                          "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": text}}]}}]}]}


def test_telegram_and_whatsapp_join_one_conversation_and_get_answers(stack, api, providers,
                                                                     unique):
    # Telegram through the existing inbound route, the bot's webhook
    secret = f"tg{unique}"
    route = api.post("/forms", json={"name": f"tg {unique}", "kind": "channel",
                                     "channel": "telegram", "source": "telegram",
                                     "telegram_secret_token": secret})
    assert route.status_code == 201, route.text
    providers.telegram_bot(f"TG{unique}")
    telegram = api.post("/channels", json={"kind": "telegram", "name": f"bot {unique}",
                                           "api_base": providers.base_url + "/tg",
                                           "token": f"TG{unique}",
                                           "route_id": route.json()["id"]})
    assert telegram.status_code == 201, telegram.text
    assert f"TG{unique}" not in telegram.text
    phone_id = f"PN{unique}"
    whatsapp = api.post("/channels", json={
        "kind": "whatsapp", "name": f"wa {unique}", "api_base": providers.base_url + "/wa",
        "phone_number_id": phone_id, "token": "WATOKEN", "app_secret": f"app{unique}",
        "verify_token": f"verify{unique}"})
    assert whatsapp.status_code == 201, whatsapp.text
    digits = str(int(time.time() * 1000))[-7:]
    wa_id = f"39347{digits}"
    tg_id = int(time.time() * 1000) % 10 ** 9
    contact = api.post("/contacts", json={
        "first_name": "Multi", "phones": [f"+{wa_id}"],
        "messengers": [{"channel": "telegram", "handle": str(tg_id)}]}).json()
    # WhatsApp's handshake, then a signed message; a wrong signature changes nothing
    url = f"{stack.base_url}/api/v1/inbound/whatsapp"
    hello = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token":
                                      f"verify{unique}", "hub.challenge": "42"}, timeout=10)
    assert hello.status_code == 200 and hello.text == "42"
    assert requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "no",
                                     "hub.challenge": "42"}, timeout=10).status_code == 403
    raw, headers = signed(f"app{unique}", whatsapp_message(phone_id, wa_id, "Hi on WhatsApp"))
    assert requests.post(url, data=raw, headers={**headers, "X-Hub-Signature-256": "sha256=00"},
                         timeout=10).status_code == 403
    ok = requests.post(url, data=raw, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    update = {"update_id": tg_id % 100000, "message": {
        "message_id": 1, "from": {"id": tg_id, "is_bot": False, "first_name": "Multi"},
        "chat": {"id": tg_id, "type": "private"}, "date": int(time.time()),
        "caption": "Hi on Telegram", "photo": [{"file_id": f"small{unique}"},
                                                {"file_id": f"PHOTO{unique}"}]}}
    providers.serve(f"/tg/botTG{unique}/getFile", json.dumps({
        "ok": True, "result": {"file_id": f"PHOTO{unique}", "file_path": "photos/p1.jpg"}
    }).encode(), "application/json")
    providers.serve(f"/tg/file/botTG{unique}/photos/p1.jpg", b"JPEG-photo", "image/jpeg")
    got = requests.post(f"{stack.base_url}/api/v1/inbound/telegram/{route.json()['key']}",
                        json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret},
                        timeout=10)
    assert got.status_code == 200, got.text
    conv = wait(lambda: (lambda c: c if c and set(c["channels"]) >= {"telegram", "whatsapp"}
                         else None)(conversation_of(api, contact["id"])), timeout=30)
    assert conv, conversation_of(api, contact["id"])
    texts = [m["text"] for m in messages_of(api, conv["id"])]
    assert set(texts) == {"Hi on WhatsApp", "Hi on Telegram"}
    # answers through each provider's API
    assert api.post(f"/conversations/{conv['id']}/messages",
                    json={"channel": "telegram", "body": "Hello from the CRM"}).status_code == 202
    sent_tg = providers.wait_for(f"/tg/botTG{unique}/sendMessage")
    assert json.loads(sent_tg[0]["body"]) == {"chat_id": str(tg_id), "text": "Hello from the CRM"}
    assert api.post(f"/conversations/{conv['id']}/messages",
                    json={"channel": "whatsapp", "body": "Hello on WhatsApp"}).status_code == 202
    sent_wa = providers.wait_for(f"/wa/{phone_id}/messages")
    body = json.loads(sent_wa[0]["body"])
    assert body["to"] == wa_id and body["text"] == {"body": "Hello on WhatsApp"}
    assert sent_wa[0]["headers"]["Authorization"] == "Bearer WATOKEN"
    # outside the 24-hour window (no message from this client yet) only templates
    other = api.post("/contacts", json={"first_name": "Cold", "phones": [
        f"+39348{digits}"]}).json()
    closed = api.post(f"/contacts/{other['id']}/messages", json={"channel": "whatsapp",
                                                                  "body": "Hi"})
    assert closed.status_code == 409
    assert closed.json()["error"]["details"]["reason"] == "whatsapp_window_closed"
    templated = api.post(f"/contacts/{other['id']}/messages", json={
        "channel": "whatsapp", "template": "welcome", "variables": {"1": "Cold"}})
    assert templated.status_code == 202, templated.text
    sent = providers.wait_for(f"/wa/{phone_id}/messages", 2)
    assert json.loads(sent[-1]["body"])["template"]["name"] == "welcome"
    # SMS through the gateway's HTTP API, into the same conversation
    sms = api.post("/channels", json={"kind": "sms", "name": f"sms {unique}",
                                      "url": providers.base_url + f"/sms{unique}",
                                      "token": "smstoken", "from_number": "+15550001"})
    assert sms.status_code == 201, sms.text
    answer = api.post(f"/contacts/{contact['id']}/messages",
                      json={"channel": "sms", "body": "See you {{contact.first_name}}"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["conversation_id"] == conv["id"]
    [texted] = providers.wait_for(f"/sms{unique}")
    assert json.loads(texted["body"]) == {"to": f"+{wa_id}", "text": "See you Multi",
                                          "from": "+15550001"}
    assert texted["headers"]["Authorization"] == "Bearer smstoken"
    # media: a WhatsApp image (the media lookup, then its url, with the access token) and
    # an MMS through Twilio's signed webhook (its media with the account SID and token)
    providers.serve(f"/wa/MEDIA{unique}", json.dumps({
        "url": providers.base_url + f"/files/img{unique}", "mime_type": "image/png",
        "file_size": 8, "id": f"MEDIA{unique}"}).encode(), "application/json")
    providers.serve(f"/files/img{unique}", b"\x89PNG-img", "image/png")
    image = whatsapp_message(phone_id, wa_id, None)
    image["entry"][0]["changes"][0]["value"]["messages"][0].update(
        type="image", image={"id": f"MEDIA{unique}", "mime_type": "image/png",
                             "caption": "The photo"})
    raw, headers = signed(f"app{unique}", image)
    assert requests.post(url, data=raw, headers=headers, timeout=10).status_code == 200
    api.patch(f"/channels/{sms.json()['id']}", json={"app_secret": f"twilio{unique}"})
    providers.serve(f"/mms{unique}", b"GIF89a-mms", "image/gif")
    form = {"MessageSid": f"SM{unique}", "AccountSid": "AC1", "From": f"+{wa_id}",
            "To": "+15550001", "Body": "Photo by SMS", "NumMedia": "1",
            "MediaUrl0": providers.base_url + f"/mms{unique}", "MediaContentType0": "image/gif"}
    sms_url = f"{stack.base_url}/api/v1/inbound/sms/twilio"
    signature = twilio_signature(sms_url, list(form.items()), f"twilio{unique}")
    assert requests.post(sms_url, data=form, headers={"X-Twilio-Signature": "forged"},
                         timeout=10).status_code == 403
    got = wait(lambda: (lambda r: r if r.status_code == 200 else None)(requests.post(
        sms_url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)), timeout=10)
    assert got and "<Response/>" in got.text, got and got.text
    media = wait(lambda: [m for m in messages_of(api, conv["id"]) if m["attachments"]]
                 if len([m for m in messages_of(api, conv["id"]) if m["attachments"]]) == 3
                 else None)
    assert media, messages_of(api, conv["id"])
    for message, content in zip(sorted(media, key=lambda m: m["channel"]),
                                [b"GIF89a-mms", b"JPEG-photo", b"\x89PNG-img"]):
        [attached] = message["attachments"]
        got = api.get(f"/conversations/{conv['id']}/attachments/{attached['id']}")
        assert got.content == content
    assert {m["text"] for m in media} == {"The photo", "Photo by SMS", "Hi on Telegram"}


def telegram_update(update_id, user_id, text, **extra):
    return {"update_id": update_id, "message": {
        "message_id": update_id, "from": {"id": user_id, "is_bot": False, "first_name": "Two"},
        "chat": {"id": user_id, "type": "private"}, "date": int(time.time()), **(
            {"text": text} if text is not None else {}), **extra}}


def test_two_telegram_bots_each_answer_through_their_own_webhook(stack, api, providers,
                                                                  unique):
    """Each bot's setWebhook has its own URL (the route's key) and secret token: an update
    joins the bot it came to (its files fetched with that bot's token) and the answer goes
    out through that bot, not through whichever bot was set up first."""
    bots, routes = [], []
    for n in (1, 2):
        route = api.post("/forms", json={"name": f"tg{n} {unique}", "kind": "channel",
                                         "channel": "telegram", "source": "telegram",
                                         "telegram_secret_token": f"s{n}{unique}"})
        assert route.status_code == 201, route.text
        routes.append(route.json())
        providers.telegram_bot(f"BOT{n}{unique}")
        bot = api.post("/channels", json={"kind": "telegram", "name": f"bot{n} {unique}",
                                          "api_base": providers.base_url + "/tg",
                                          "token": f"BOT{n}{unique}",
                                          "route_id": route.json()["id"]})
        assert bot.status_code == 201, bot.text
        assert bot.json()["route_id"] == route.json()["id"]
        bots.append(bot.json())
    # one route, one bot; a route must be a Telegram route
    taken = api.post("/channels", json={"kind": "telegram", "name": "again",
                                        "token": "X", "route_id": routes[0]["id"]})
    assert taken.status_code == 409 and taken.json()["error"]["details"]["reason"] == "route_taken"
    assert api.patch(f"/channels/{bots[1]['id']}",
                     json={"route_id": routes[0]["id"]}).status_code == 409
    assert api.post("/channels", json={"kind": "telegram", "name": "nowhere", "token": "X",
                                       "route_id": "no-such-route"}).status_code == 422
    assert api.get(f"/channels/{bots[1]['id']}").json()["route_id"] == routes[1]["id"]
    # a client writes to bot 2 only (with a photo: file ids are the bot's own)
    base = int(time.time() * 1000) % 10 ** 9
    user2 = base + 2
    contact2 = api.post("/contacts", json={"first_name": "Two", "messengers": [
        {"channel": "telegram", "handle": str(user2)}]}).json()
    providers.serve(f"/tg/botBOT2{unique}/getFile", json.dumps({
        "ok": True, "result": {"file_id": f"F{unique}", "file_path": "docs/a.txt"}
    }).encode(), "application/json")
    providers.serve(f"/tg/file/botBOT2{unique}/docs/a.txt", b"bot two's file", "text/plain")
    doc = {"file_id": f"F{unique}", "file_unique_id": f"U{unique}", "file_name": "a.txt",
           "mime_type": "text/plain"}
    url = f"{stack.base_url}/api/v1/inbound/telegram/"
    # the second bot's URL with the first bot's secret: refused
    assert requests.post(url + routes[1]["key"], json=telegram_update(1, user2, "x"),
                         headers={"X-Telegram-Bot-Api-Secret-Token": f"s1{unique}"},
                         timeout=10).status_code == 403
    got = requests.post(url + routes[1]["key"],
                        json=telegram_update(base % 100000, user2, None, caption="For bot two",
                                             document=doc),
                        headers={"X-Telegram-Bot-Api-Secret-Token": f"s2{unique}"}, timeout=10)
    assert got.status_code == 200, got.text
    # and another client to bot 1
    user1 = base + 1
    contact1 = api.post("/contacts", json={"first_name": "One", "messengers": [
        {"channel": "telegram", "handle": str(user1)}]}).json()
    got = requests.post(url + routes[0]["key"],
                        json=telegram_update(base % 100000 + 1, user1, "For bot one"),
                        headers={"X-Telegram-Bot-Api-Secret-Token": f"s1{unique}"}, timeout=10)
    assert got.status_code == 200, got.text
    convs = {}
    for n, contact in ((1, contact1), (2, contact2)):
        convs[n] = wait(lambda contact=contact: (lambda c: c if c and messages_of(api, c["id"])
                                                 else None)(conversation_of(api, contact["id"])))
        assert convs[n], conversation_of(api, contact["id"])
        [msg] = messages_of(api, convs[n]["id"])
        assert msg["channel"] == "telegram" and msg["channel_id"] == bots[n - 1]["id"], msg
    [msg] = messages_of(api, convs[2]["id"])
    assert msg["text"] == "For bot two"
    [attached] = msg["attachments"]
    assert api.get(f"/conversations/{convs[2]['id']}/attachments/{attached['id']}"
                   ).content == b"bot two's file"
    assert not providers.to(f"/tg/botBOT1{unique}/getFile")
    # each answer through the bot the client wrote to, with the Bot API's message_id
    for n in (2, 1):
        answer = api.post(f"/conversations/{convs[n]['id']}/messages",
                          json={"channel": "telegram", "body": f"Answer {n}"})
        assert answer.status_code == 202, answer.text
        [sent] = providers.wait_for(f"/tg/botBOT{n}{unique}/sendMessage")
        assert json.loads(sent["body"]) == {"chat_id": str(base + n), "text": f"Answer {n}"}
    for n in (1, 2):
        assert len(providers.to(f"/tg/botBOT{n}{unique}/sendMessage")) == 1
        out = wait(lambda n=n: [m for m in messages_of(api, convs[n]["id"])
                                if m["direction"] == "outbound" and m["status"] == "sent"])
        assert out and out[0]["channel_id"] == bots[n - 1]["id"]
        assert out[0]["external_id"] == "1", out


def test_waiting_client_escalates_once_and_inbox_moves(stack, api, providers, make_user,
                                                       record_events, unique):
    manager = make_user("manager", team=f"t{unique}")
    agent = make_user("agent", team=f"t{unique}", manager_id=manager.user["id"])
    # the notifier finds the manager in its copy of the users (user_upserted)
    users = stack.db("notifications")["users"]
    assert wait(lambda: (users.find_one({"_id": agent.user["id"]}) or {}).get("manager_id"))
    assert wait(lambda: users.find_one({"_id": manager.user["id"]}))
    phone_id = f"PNX{unique}"
    api.post("/channels", json={"kind": "whatsapp", "name": f"wa2 {unique}",
                                "api_base": providers.base_url + "/wa2",
                                "phone_number_id": phone_id, "token": "T",
                                "app_secret": f"esc{unique}", "first_response_minutes": 0.02})
    digits = str(int(time.time() * 1000))[-7:]
    wa_id = f"39349{digits}"
    contact = api.post("/contacts", json={"first_name": "Waiting", "phones": [f"+{wa_id}"],
                                          "owner_id": agent.user["id"]}).json()
    events = record_events("conversations", "conversation_escalated")
    raw, headers = signed(f"esc{unique}", whatsapp_message(phone_id, wa_id, "Anyone there?"))
    # the gateway keeps the channels' secrets 2 s (SECRETS_CACHE_S): a new channel's app
    # secret is known to every worker after that
    assert wait(lambda: requests.post(f"{stack.base_url}/api/v1/inbound/whatsapp", data=raw,
                                      headers=headers, timeout=10).status_code == 200,
                timeout=10)
    conv = wait(lambda: conversation_of(api, contact["id"]))
    waiting = agent.get("/conversations", params={"waiting": "true"}).json()["items"]
    assert conv["id"] in [c["id"] for c in waiting]
    assert [c for c in waiting if c["id"] == conv["id"]][0]["waiting_seconds"] >= 0
    found = events.wait_for(lambda e: e["data"]["conversation_id"] == conv["id"], timeout=20)
    assert found and found[0]["data"]["user_id"] == agent.user["id"]
    events.drain(3)
    assert len([e for e in events.events if e["data"]["conversation_id"] == conv["id"]]) == 1
    # the manager is told through the notifications path
    assert wait(lambda: [n for n in manager.get("/notifications").json()["items"]
                         if "Waiting" in json.dumps(n)], timeout=20)
    # assign, close, reopen
    assert agent.post(f"/conversations/{conv['id']}/assign",
                      json={"assignee_id": agent.user["id"]}).json()["assignee_id"] == agent.user["id"]
    mine = agent.get("/conversations", params={"assignee_id": "me"}).json()["items"]
    assert conv["id"] in [c["id"] for c in mine]
    assert agent.post(f"/conversations/{conv['id']}/close").json()["status"] == "closed"
    closed = agent.get("/conversations", params={"status": "closed"}).json()["items"]
    assert conv["id"] in [c["id"] for c in closed]
    assert agent.post(f"/conversations/{conv['id']}/reopen").json()["status"] == "open"
    # closed again, the client's next message reopens it
    assert agent.post(f"/conversations/{conv['id']}/close").json()["status"] == "closed"
    raw, headers = signed(f"esc{unique}", whatsapp_message(phone_id, wa_id, "Hello again?"))
    assert requests.post(f"{stack.base_url}/api/v1/inbound/whatsapp", data=raw,
                         headers=headers, timeout=10).status_code == 200
    assert wait(lambda: agent.get(f"/conversations/{conv['id']}").json()["status"] == "open")
    stranger = make_user("agent")
    assert stranger.get(f"/conversations/{conv['id']}").status_code == 404


def test_search_gets_messages_by_page_and_by_id(stack, api, shared_mailbox):
    page = stack.rpc.call("conversations", "search_records", "message", limit=5)
    assert page["items"] and all(i["id"] and i["conversation_id"] for i in page["items"])
    first = page["items"][0]
    [again] = stack.rpc.call("conversations", "search_records", "message",
                             ids=[first["id"]])["items"]
    assert again["text"] == first["text"]


def test_kill_mid_send_sends_exactly_once(stack, api, mail, shared_mailbox, unique):
    dovecot, relay = mail
    contact = api.post("/contacts", json={"first_name": "Bob", "emails": [CLIENT2]}).json()
    stack.stop_service("conversations", 0)
    fast = {"CRM_CONVERSATIONS_SEND_LEASE_S": "3", "CRM_CONVERSATIONS_LEASE_S": "5"}
    proc = stack.start_service("conversations", 0, CRM_CONVERSATIONS_FAILPOINTS="after_smtp",
                               **fast)
    try:
        stack.wait_service("conversations", timeout=60)
        answer = api.post(f"/contacts/{contact['id']}/messages",
                          json={"subject": f"Once {unique}", "body": "Only once"})
        assert answer.status_code == 202, answer.text
        proc.wait(30)  # the failpoint: dead right after the SMTP server took it
        assert proc.returncode == 17
    finally:
        stack.stop_service("conversations", 0)
        stack.start_service("conversations", 0, **fast)
        stack.wait_service("conversations", timeout=60)
    message_id = answer.json()["message_id"]
    conv_id = answer.json()["conversation_id"]
    assert wait(lambda: [m for m in messages_of(api, conv_id)
                         if m["message_id"] == message_id and m["status"] == "sent"], timeout=30)
    time.sleep(2)
    copies = [m for m in dovecot.messages(CLIENT2) if m["Message-ID"] == message_id]
    assert len(copies) == 1
    sent = [m for m in dovecot.messages(SALES, "Sent") if m["Message-ID"] == message_id]
    assert len(sent) == 1



def test_a_burst_of_mails_goes_out_once_each_with_one_copy_each_in_sent(stack, api, mail,
                                                                       shared_mailbox,
                                                                       unique):
    """Sent at once, the mails share each lane's connections and its Sent copies are
    APPENDed together (MULTIAPPEND): every mail delivered once and copied once."""
    dovecot, relay = mail
    contact = (api.get("/contacts/lookup", params={"email": CLIENT2}).json()["items"] or [
        api.post("/contacts", json={"first_name": "Burst", "emails": [CLIENT2]}).json()])[0]
    subjects = [f"Burst {unique} {i}" for i in range(12)]
    sent = [stack.rpc.call("conversations", "send_to_contact", contact["id"], "email",
                           f"body {i}\nline two", subject=subject,
                           idempotency_key=f"burst-{unique}-{i}")
            for i, subject in enumerate(subjects)]
    ids = {m["message_id"] for m in sent}

    def copies(login, folder="INBOX"):
        return [m["Message-ID"] for m in dovecot.messages(login, folder)
                if m["Message-ID"] in ids]
    assert wait(lambda: len(copies(SALES, "Sent")) >= len(ids))
    time.sleep(1)
    assert sorted(copies(SALES, "Sent")) == sorted(ids)
    assert sorted(copies(CLIENT2)) == sorted(ids)
    conn = mail_module.imap_connect({"host": "127.0.0.1", "port": dovecot.port,
                                     "security": "starttls", "username": SALES,
                                     "verify_tls": False}, "sales-pw", 10)
    try:  # one command for several, bare LF made CRLF; the server offers both extensions
        assert mail_module._offers(conn, "MULTIAPPEND", "LITERAL+")
        mail_module.append_many(conn, "Sent", [
            raw_mail(CLIENT, SALES, "copy", f"copy {i}", f"<many-{i}-{unique}@crm.test>"
                     ).replace(b"\r\n", b"\n") for i in range(3)])
    finally:
        mail_module.close(conn)
    many = [m for m in dovecot.messages(SALES, "Sent") if f"-{unique}@crm.test" in
            (m["Message-ID"] or "") and m["Message-ID"].startswith("<many-")]
    assert sorted(m["Message-ID"] for m in many) == sorted(
        f"<many-{i}-{unique}@crm.test>" for i in range(3))
    assert all(m.get_body(("plain",)).get_content().strip().startswith("copy") for m in many)


def test_a_send_cut_in_its_window_is_never_repeated(stack, api, mail, shared_mailbox, unique,
                                                    monkeypatch):
    """What a sender taking over decides, driven in-process against the stack's database
    and mail servers (no second kill): DATA begun but its acceptance never written is
    `unconfirmed` unless its copy is in Sent; a messenger call begun is never repeated."""
    dovecot, relay = mail
    contact = (api.get("/contacts/lookup", params={"email": CLIENT2}).json()["items"] or [
        api.post("/contacts", json={"first_name": "Cut", "emails": [CLIENT2]}).json()])[0]
    first = api.post(f"/contacts/{contact['id']}/messages",
                     json={"subject": f"Cut {unique}", "body": "before"}).json()
    assert wait(lambda: [m for m in messages_of(api, first["conversation_id"])
                         if m["id"] == first["id"] and m["status"] == "sent"])
    settings = load_settings(stack.env())  # the services' (their secrets' key)
    monkeypatch.setattr(config, "_settings", settings)
    store = ConversationsStore(stack.db("conversations"), settings)
    sender = Sender(store, lambda write, *args: write(*args)[0], settings.conversations, "test")
    stored = store.get("messages", first["id"])
    later = utcnow() + timedelta(hours=1)  # not due: the running service leaves them

    def copy(message_id, **fields):
        doc = dict(stored, _id=f"{message_id.strip('<>')}", message_id=message_id,
                   dedupe_key=f"out:{message_id}", status="sending", send_due_at=later,
                   attempts=1, smtp_data_at=later, **fields)
        doc.pop("smtp_accepted_at", None)
        store.messages.insert_one(doc)
        return doc
    unsure = copy(f"<unsure-{unique}@crm.test>")
    in_sent = copy(f"<insent-{unique}@crm.test>")
    raw = raw_mail(SALES, CLIENT2, "copy", "copy", in_sent["message_id"])
    dovecot.deliver(SALES, raw, folder="Sent")
    telegram = dict(stored, _id=f"tg-{unique}", channel="telegram", channel_id="none",
                    dedupe_key=f"out:tg-{unique}", status="sending", send_due_at=later,
                    attempts=1, http_started_at=later, to=[{"address": "1", "name": ""}])
    store.messages.insert_one(telegram)
    sender.deliver_all([unsure, in_sent, telegram])
    assert store.get("messages", unsure["_id"])["status"] == "unconfirmed"
    assert store.get("messages", in_sent["_id"])["status"] == "sent"
    assert store.get("messages", telegram["_id"])["status"] == "unconfirmed"
    delivered = {m["Message-ID"] for m in dovecot.messages(CLIENT2)}
    assert unsure["message_id"] not in delivered and in_sent["message_id"] not in delivered


def test_message_templates_checked_rendered_within_visibility_and_sent(stack, api, mail,
                                                                     shared_mailbox,
                                                                     make_user, unique):
    dovecot, relay = mail
    # checked when saved: the field and the line named, nothing stored
    for body, field, needle in (
            ({"body": "Hi\n{{ contact.nope }}"}, "body", "Line 2"),
            ({"body": "Hi {{ contact.first_name "}, "body", "syntax"),
            ({"body": "Hi", "subject": "{{ secret.key }}"}, "subject", "secret"),
            ({"body": "Hi", "channel": "sms", "subject": "S"}, "subject", "e-mail")):
        bad = api.post("/templates", json={"name": f"Bad {unique}", **body})
        assert bad.status_code == 422, bad.text
        [message] = bad.json()["error"]["details"]["fields"][field]
        assert needle in message, message
    assert api.get("/templates", params={"q": f"bad {unique}"}).json()["items"] == []
    made = api.post("/templates", json={
        "name": f"Welcome {unique}", "channel": "email",
        "subject": "Hello {{ contact.first_name }}",
        "body": "Dear {{ contact.first_name }} {{ contact.last_name }},\n"
                "{% if deal.title %}about {{ deal.title }}{% endif %}-- {{ user.name }}"})
    assert made.status_code == 201, made.text
    template = made.json()
    dup = api.post("/templates", json={"name": f"  WELCOME {unique}", "body": "x"})
    assert dup.status_code == 409 and dup.json()["error"]["details"]["field"] == "name"
    # admins and managers write; everyone reads
    manager, agent, other = make_user("manager"), make_user("agent"), make_user("agent")
    assert manager.post("/templates", json={"name": f"Mgr {unique}", "channel": "sms",
                                            "body": "Hi {{ contact.first_name }}"}).status_code == 201
    assert agent.post("/templates", json={"name": f"Agent {unique}", "body": "x"}).status_code == 403
    listed = agent.get("/templates", params={"q": unique, "channel": "email"}).json()["items"]
    assert [t["name"] for t in listed] == [f"Welcome {unique}"]
    # the preview: a contact the caller sees, else 404
    address = f"tina-{unique}@client.test"
    contact = api.post("/contacts", json={"first_name": "Tina", "last_name": "Temp",
                                          "emails": [address],
                                          "owner_id": agent.user["id"]}).json()
    shown = agent.post(f"/templates/{template['id']}/render", json={"contact_id": contact["id"]})
    assert shown.status_code == 200, shown.text
    assert shown.json()["subject"] == "Hello Tina"
    assert shown.json()["body"] == "Dear Tina Temp,\n-- Test agent"
    hidden = other.post(f"/templates/{template['id']}/render", json={"contact_id": contact["id"]})
    assert hidden.status_code == 404, hidden.text
    # sent with template_id: filled on the server for the contact, delivered
    sent = agent.post(f"/contacts/{contact['id']}/messages", json={"template_id": template["id"]})
    assert sent.status_code == 202, sent.text
    assert sent.json()["template_id"] == template["id"]
    got = wait(lambda: relay.to(address))
    assert got and b"Dear Tina Temp," in got[0]["raw"] and b"Hello Tina" in got[0]["raw"]
    # a reply's own body wins, the template gives the subject
    conv = conversation_of(api, contact["id"])
    answer = agent.post(f"/conversations/{conv['id']}/messages",
                        json={"template_id": template["id"], "body": "Own words"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["text"] == "Own words" and answer.json()["subject"] == "Hello Tina"
    wrong = agent.post(f"/conversations/{conv['id']}/messages",
                       json={"template_id": template["id"], "channel": "sms"})
    assert wrong.status_code == 422 and "template_id" in wrong.json()["error"]["details"]["fields"]
    # deleted: gone, its name free again
    assert manager.delete(f"/templates/{template['id']}").status_code == 200
    assert agent.get(f"/templates/{template['id']}").status_code == 404
    assert api.post("/templates", json={"name": f"welcome {unique}", "body": "again"}).status_code == 201
