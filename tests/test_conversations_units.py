"""Pure functions of the conversations service: MIME reading (malformed, wrong charsets,
scripts, oversized attachments), threading keys, placeholders, outgoing headers."""
import pytest

from crm_common.errors import ValidationFailed
from services.conversations import mail, templates
from services.conversations.operations import render


def test_html_is_sanitised_and_plain_text_kept():
    raw = (b"From: Eve <EVE@Example.COM>\r\nTo: sales@crm.test\r\nSubject: Hi\r\n"
           b"Message-ID: <a@b>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n--XX\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<b>bold</b><script>alert(1)</script>"
           b"<a href=\"javascript:alert(2)\" onclick=\"x()\">link</a>\r\n--XX--\r\n")
    fields, attachments = mail.parse(raw, 1000)
    assert fields["from"] == {"address": "eve@example.com", "name": "Eve"}
    assert fields["text"].strip() == "plain words"
    assert "<b>bold</b>" in fields["html"]
    for bad in ("script", "javascript", "onclick"):
        assert bad not in fields["html"]
    assert fields["message_id"] == "<a@b>" and attachments == []


def test_malformed_mime_and_unknown_charset_still_read():
    raw = (b"From: x@y.test\r\nSubject: =?bogus-charset?Q?caf=E9?=\r\n"
           b"Content-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xe9 ok\r\n")
    fields, _ = mail.parse(raw, 1000)
    assert "caf" in fields["text"] and "ok" in fields["text"]
    garbage, _ = mail.parse(b"\x00\xff not a message at all", 1000)
    assert garbage["from"]["address"] is None
    broken = (b"From: x@y.test\r\nContent-Type: multipart/mixed; boundary=\"nope\"\r\n\r\n"
              b"no parts here\r\n")
    fields, attachments = mail.parse(broken, 1000)
    assert attachments == []


def test_oversized_attachment_is_listed_not_kept():
    msg = mail.build({"address": "s@crm.test"}, [{"address": "c@x.test"}], "S", "body", None,
                     "<id@crm.test>", None, [], [({"filename": "big.bin",
                                                  "content_type": "application/octet-stream"},
                                                 b"x" * 5000)])
    fields, attachments = mail.parse(bytes(msg), 1000)
    [(meta, data)] = attachments
    assert data is None and meta["size"] == 5000 and "limit" in meta["skipped"]


def test_forged_addresses_are_dropped_and_threading_keys():
    assert mail.addresses("a b c, <not an address>, ok@x.test") == [
        {"address": "ok@x.test", "name": ""}]
    assert mail.subject_key("Re: FW: re[2]:  Price   request") == "price request"
    assert mail.message_ids("<a@b> junk <c@d>") == ["<a@b>", "<c@d>"]


def test_reply_headers_and_placeholders():
    msg = mail.build({"address": "sales@crm.test", "display_name": "Sales"},
                     [{"address": "c@x.test", "name": "C"}], "Re: Hi", "text", "<p>x</p>",
                     "<new@crm.test>", "<old@x.test>", ["<root@x.test>", "<old@x.test>"], [])
    assert msg["In-Reply-To"] == "<old@x.test>"
    assert msg["References"] == "<root@x.test> <old@x.test>"
    assert render("Hi {{contact.first_name}} {{deal.title}}{{vars.x}}{{contact.custom}}",
                  {"first_name": "Ann", "custom": {"a": 1}}, {"title": "Deal"}, {"x": "!"}) \
        == "Hi Ann Deal!"



def test_first_response_target_counts_working_minutes():
    from datetime import datetime, timezone

    from services.conversations.operations import first_response_due
    friday = datetime(2026, 12, 4, 17, 55, tzinfo=timezone.utc)
    hours = {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5], "timezone": "UTC"}
    assert first_response_due(friday, {"first_response_minutes": 15, "working_hours": hours}) \
        == datetime(2026, 12, 7, 9, 10, tzinfo=timezone.utc)
    assert first_response_due(friday, {"first_response_minutes": 15}) == \
        datetime(2026, 12, 4, 18, 10, tzinfo=timezone.utc)
    assert first_response_due(friday, {}) is None


def test_a_date_without_its_zone_reads_as_utc():
    from datetime import datetime, timezone
    fields, _ = mail.parse(b"From: x@y.test\r\nDate: Sat, 06 Dec 2025 10:00:00 -0000\r\n\r\nx", 10)
    assert fields["date"] == datetime(2025, 12, 6, 10, 0, tzinfo=timezone.utc)
    fields, _ = mail.parse(b"From: x@y.test\r\nDate: not a date\r\n\r\nx", 10)
    assert fields["date"] is None


def test_a_conversation_follows_its_sent_messages_by_one_write_or_none():
    from datetime import datetime, timedelta, timezone

    from services.conversations.sender import followed
    t0 = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
    now = t0 + timedelta(minutes=1)

    def msg(seconds, text, channel="email"):
        return {"at": t0 + timedelta(seconds=seconds), "text": text, "channel": channel,
                "mailbox_id": "mb1" if channel == "email" else None}
    conv = {"_id": "c1", "last_message_at": t0, "channels": ["telegram"], "waiting": True,
            "waiting_since": t0, "escalate_at": t0 + timedelta(hours=1),
            "first_response_due_at": t0 + timedelta(hours=1)}
    update = followed(conv, [msg(2, "second"), msg(1, "first")], True, now)
    assert update == {
        "sets": {"last_preview": "second", "mailbox_id": "mb1", "waiting": False,
                 "waiting_since": None, "updated_at": now},
        "last_message_at": t0 + timedelta(seconds=2),
        "unset": ["escalate_at", "first_response_due_at"], "channels": ["email"]}
    assert conv["last_message_at"] == t0 + timedelta(seconds=2) and "escalate_at" not in conv
    # nothing changes: no write at all
    assert followed(conv, [msg(2, "second")], True, now) is None
    # an older message sent late (a retry) leaves the latest preview and time
    assert followed(conv, [msg(0, "older")], True, now) is None
    # a failed one moves the conversation but does not answer the client
    waiting = {"_id": "c2", "last_message_at": t0, "channels": [], "waiting": True,
               "waiting_since": t0}
    update = followed(waiting, [msg(5, "x", "telegram")], False, now)
    assert "waiting" not in update["sets"] and update["channels"] == ["telegram"]



def test_a_send_run_begins_only_messages_with_lease_left():
    """No message (claimed as it was queued, or by a claim) is begun in its lease's last
    seconds: a sender claiming it then would find no mark of it and send it again; and a
    process hands over no more than its send rate begins in a third of a lease."""
    from datetime import timedelta
    from types import SimpleNamespace

    from crm_common.timeutil import utcnow
    from services.conversations.sender import Sender
    settings = SimpleNamespace(send_lease_s=60.0, send_concurrency=2, failpoints="")
    now = utcnow()
    fresh = {"_id": "m1", "channel": "telegram", "send_due_at": now + timedelta(seconds=59)}
    old = {"_id": "m2", "channel": "telegram", "send_due_at": now + timedelta(seconds=20)}
    ending = {"_id": "m3", "channel": "telegram", "send_due_at": now + timedelta(seconds=2)}
    handed = [fresh, old]
    sender = Sender(None, None, settings, "test", http=object(),
                    claimed=lambda most: [handed.pop() for _ in list(handed)[:most]])
    handed.append(ending)
    assert sender._claimed_at_queuing() == [old, fresh] and handed == []
    begun = []
    sender._send_telegram = lambda msg, lane, copies=None: begun.append(msg["_id"]) or "x"
    outcomes = []
    sender._lane(("ch", 0, [fresh, ending, old]), outcomes)
    assert begun == ["m1", "m2"] and [m["_id"] for m, _ in outcomes] == ["m1", "m2"]

    from services.conversations.dependencies import Workers
    workers = Workers()
    workers.stopping, workers.claimed, workers.send_rate = False, [], None
    assert workers.may_claim(300, 60)  # rate unknown: up to 300
    workers.claimed = [{}] * 60
    workers.note_rate(100, 20.0)  # 5/s: 100 in a third of 60 s
    assert workers.may_claim(300, 60)
    workers.claimed = [{}] * 100
    assert not workers.may_claim(300, 60)
    workers.stopping = True
    assert not workers.may_claim(300, 60)

def test_message_templates_are_checked_by_field_and_line_and_filled_leniently():
    def refused(doc):
        with pytest.raises(ValidationFailed) as caught:
            templates.check({"channel": "any", "body": "Hi", **doc})
        return caught.value.args[1]["fields"]
    assert refused({"body": "Hi\n\n{{ contact.no_such }}"}) == {
        "body": ["Line 3: Unknown placeholder: unknown field 'contact.no_such': contact has no "
                 "field 'no_such'"]}
    assert "Unknown placeholder 'secret'" in refused({"subject": "{{ secret }}"})["subject"][0]
    assert "syntax error line 1" in refused({"html": "{% if %}"})["html"][0]
    assert list(refused({"channel": "sms", "subject": "S"})) == ["subject"]
    assert list(refused({"channel": "email", "whatsapp_template": "hello"})) == ["whatsapp_template"]
    templates.check({"channel": "email", "subject": "{{ deal.title }}",
                     "body": "{{ contact.custom.tier }} {{ user.first_name }}"})
    filled = templates.render(
        {"subject": "For {{ contact.first_name }}", "body": "{{ deal.title }}|{{ user.first_name }}"
                                                           "|{{ contact.custom.tier }}"},
        {"first_name": "Ann"}, None, {"name": "Mario Rossi"})
    assert filled == {"subject": "For Ann", "body": "|Mario|", "html": None}
    assert "no include" in refused({"body": "{% include 'x' %}"})["body"][0]
    assert "No filter named" in refused({"body": "{{ contact.first_name | nope }}"})["body"][0]
    for failing in ("{{ 'x' * 1000000 }}", "{{ contact.first_name + 1 }}", "{{ 1 / 0 }}"):
        with pytest.raises(ValidationFailed):  # a bounded sandbox; the template's own fault
            templates.render({"body": failing}, {"first_name": "Ann"}, {}, {})
    assert templates.name_key("  Follow  UP ") == "follow up"
