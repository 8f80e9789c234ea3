"""Conversations speed: a mailbox synced by the service (every message parsed, matched to
a contact over RPC, threaded, stored with its event) beside raw imaplib fetching the same
mailbox; and outbound e-mail and Telegram through the service's queue (stored, claimed,
SMTP and a copy APPENDed to Sent / the Bot API's sendMessage, marked sent with its event)
beside raw smtplib and raw requests sending the same number.

    .venv/bin/python bench/bench_conversations.py [--messages 300] [--outbound 50] [--fresh]
        [--clients 16] [--contacts 50] [--profile]

`--profile`: after each outbound phase, the database's time per message by namespace (its
`top`) and its operations per message by shape (the profiler recording every operation,
which costs CPU itself: leave it off for the figures).

Starts an isolated stack (tests/stack.py), a Dovecot and an SMTP sink (tests/mail_servers.py,
tests/fake_receivers.py). The issue's targets are 10,000 messages synced in under 60 s and
100 outbound messages/s; the default sizes are a smoke run.
"""
import argparse
import email.message
import json
import email.utils
import imaplib
import os
import smtplib
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (Platform, cpu_note, cpu_seconds, profile_databases,  # noqa: E402
                          profile_shapes)
from crm_common.errors import Timeout  # noqa: E402
from tests.fake_receivers import HttpRecorder, SmtpReceiver  # noqa: E402
from tests.mail_servers import Dovecot  # noqa: E402

BOX = "bench@crm.test"


def fill(dovecot, n, senders, fresh=False):
    """`n` messages; dated over the past year (the history a mailbox holds when it is
    connected), or now with `fresh` (every one of them news)."""
    conn = dovecot.connect(BOX)
    now = time.time()
    for i in range(n):
        msg = email.message.EmailMessage()
        msg["From"] = f"Client {i % senders} <client{i % senders}@bench.test>"
        msg["To"] = BOX
        msg["Subject"] = f"Question {i % 40}"
        msg["Message-ID"] = f"<bench-{i}@bench.test>"
        msg["Date"] = email.utils.formatdate(now if fresh else now - (n - i) * 3000)
        msg.set_content(f"Hello, question number {i}.\n" + "Some words of text. " * 20)
        conn.append("INBOX", None, imaplib.Time2Internaldate(time.time()), msg.as_bytes())
    conn.logout()


def imaplib_reference(dovecot):
    start = time.perf_counter()
    conn = imaplib.IMAP4(dovecot.host, dovecot.port)
    conn.starttls(ssl_context=ssl._create_unverified_context())
    conn.login(BOX, dovecot.users[BOX])
    conn.select("INBOX", readonly=True)
    uids = conn.uid("SEARCH", None, "ALL")[1][0].split()
    got = 0
    for i in range(0, len(uids), 100):
        _, data = conn.uid("FETCH", b",".join(uids[i:i + 100]), "(UID BODY.PEEK[])")
        got += sum(1 for item in data if isinstance(item, tuple))
    conn.logout()
    return got, time.perf_counter() - start


def smtplib_reference(port, n):
    """The same number sent on one kept connection, as each of the service's lanes."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for i in range(n):
            msg = email.message.EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = BOX, "ref@bench.test", f"ref {i}"
            msg["Message-ID"] = email.utils.make_msgid(domain="crm.test")
            msg.set_content("reference")
            client.send_message(msg)
    return time.perf_counter() - start


def http_reference(url, n):
    """The same number of Bot API calls on one kept connection (the sender's per lane)."""
    session = requests.Session()
    start = time.perf_counter()
    for i in range(n):
        session.post(url, json={"chat_id": "1", "text": f"ref {i}"}, timeout=10)
    return time.perf_counter() - start


def server_top(platform):
    """The database's time and count per namespace and kind of operation (its `top`)."""
    return platform.stack.mongo.admin.command("top")["totals"]


def print_top(before, after, n):
    rows = []
    for ns, sections in after.items():
        if not isinstance(sections, dict):
            continue
        old = before.get(ns) or {}
        for section in ("queries", "insert", "update", "remove", "getmore", "commands"):
            spent = sections[section]["time"] - (old.get(section) or {}).get("time", 0)
            count = sections[section]["count"] - (old.get(section) or {}).get("count", 0)
            if count:
                rows.append((spent, count, ns, section))
    print(f"    database time per message by namespace (server's top, {n} messages):")
    for spent, count, ns, section in sorted(rows, reverse=True)[:16]:
        print(f"      {spent / 1000 / n:7.2f} ms {count / n:6.2f} ops  {ns} {section}")


def print_shapes(platform, n):
    """Operations per message by shape (the profiler recording every operation)."""
    shapes = profile_shapes(platform.stack.mongo, platform.db_prefix, stop=True)
    print("    operations per message by shape (profiler; whole ms only):")
    for (ns, verb, spec), (count, total) in sorted(shapes.items(), key=lambda kv: -kv[1][0])[:30]:
        print(f"      {count / n:6.2f} ops {total / n:6.2f} ms  {ns} {verb} {{{spec}}}")


def outbound(platform, api, sink, args):
    """`--outbound` messages per channel to `--contacts` clients round robin, queued by
    `--clients` concurrent send_to_contact calls (as automation's campaigns make them), then
    sent by the service: e-mail through SMTP (a copy APPENDed to Sent), Telegram through
    the Bot API's sendMessage (a local receiver). Rate from the first call to the last
    delivery; lost and doubled counted on what the receivers got."""
    recorder = HttpRecorder().start()
    try:
        token = "BENCHBOT"
        bot_path = recorder.telegram_bot(token) + "/sendMessage"
        route = api.post("/forms", json={"name": "bench bot", "kind": "channel",
                                         "channel": "telegram", "source": "telegram",
                                         "telegram_secret_token": "benchsecret"}).json()
        bot = api.post("/channels", json={"kind": "telegram", "name": "bench bot",
                                          "api_base": recorder.base_url + "/tg",
                                          "token": token, "route_id": route["id"]})
        assert bot.status_code == 201, bot.text
        contacts = []
        for i in range(args.contacts):
            contacts.append(api.post("/contacts", json={
                "first_name": f"Out{i}", "emails": [f"out{i}@bench.test"],
                "messengers": [{"channel": "telegram", "handle": str(700000 + i)}]}).json())
        me = api.get("/users/me").json()["id"]
        n = args.outbound

        seen = {"email": [0, []], "telegram": [0, []]}

        def received(channel):
            """What the receivers got so far, read once each (the bench polls it every
            50 ms: reading all of it again, the e-mails' headers parsed each time, took
            6 ms of CPU per message from the 2 cores the stack runs on)."""
            done, got = seen[channel]
            if channel == "email":
                new = sink.messages[done:]
                got += [s for s in (m["message"]["Subject"] for m in new)
                        if s.startswith("Bench ")]
            else:
                new = recorder.requests[done:]
                got += [json.loads(r["body"])["text"] for r in new if r["path"] == bot_path]
            seen[channel][0] = done + len(new)
            return got

        for channel in ("email", "telegram"):
            retried = []

            def queue(i, channel=channel, retried=retried):
                for _ in range(5):  # a timed-out call again with its idempotency key
                    try:
                        return platform.stack.rpc.call(
                            "conversations", "send_to_contact",
                            contacts[i % len(contacts)]["id"], channel, f"Bench {i}",
                            subject=f"Bench {i}", sender_user_id=me,
                            idempotency_key=f"bench-{channel}-{i}", timeout=30)
                    except Timeout:
                        retried.append(i)
                raise RuntimeError(f"message {i} not queued")

            if args.profile:
                profile_databases(platform.stack.mongo, platform.db_prefix, 0, reset=True)
                top_before = server_top(platform)
            before = cpu_seconds(platform)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(queue, range(n)))
            queued = time.perf_counter() - start
            last, last_change = 0, time.perf_counter()
            while time.perf_counter() - last_change < 30:  # until nothing came for 30 s
                got = len(received(channel))
                if got >= n:
                    break
                if got != last:
                    last, last_change = got, time.perf_counter()
                time.sleep(0.05)
            seconds = time.perf_counter() - start
            after = cpu_seconds(platform)
            time.sleep(3)  # a message sent twice would come in after the last one
            got = received(channel)
            texts = set(got)
            lost = len({f"Bench {i}" for i in range(n)} - texts)
            print(f"  service outbound {channel}: {len(texts)} of {n} in {seconds:.2f} s "
                  f"({len(texts) / seconds:.1f}/s; queued by {args.clients} callers in "
                  f"{queued:.2f} s = {n / queued:.0f}/s, {len(retried)} calls made again) "
                  f"lost {lost}, doubled {len(got) - len(texts)} "
                  f"{cpu_note(before, after, max(len(texts), 1))}")
            if args.profile:
                print_top(top_before, server_top(platform), n)
                print_shapes(platform, n)
        ref = smtplib_reference(sink.port, n)
        print(f"  reference smtplib (one connection): {n} sent in {ref:.2f} s ({n / ref:.0f}/s)")
        ref = http_reference(recorder.base_url + bot_path, n)
        print(f"  reference requests to the Bot API receiver (one connection): {n} in "
              f"{ref:.2f} s ({n / ref:.0f}/s)")
    finally:
        recorder.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--senders", type=int, default=30)
    parser.add_argument("--outbound", type=int, default=50,
                        help="messages sent per channel (e-mail, then Telegram)")
    parser.add_argument("--fresh", action="store_true",
                        help="the mailbox's messages dated now (all news), not over the past year")
    parser.add_argument("--clients", type=int, default=16, help="concurrent RPC callers")
    parser.add_argument("--contacts", type=int, default=50, help="recipients, round robin")
    parser.add_argument("--profile", action="store_true",
                        help="outbound: the database's time by namespace and operations by shape")
    args = parser.parse_args()
    dovecot = Dovecot({BOX: "bench-pw"}).start()
    sink = SmtpReceiver().start()
    platform = Platform()
    try:
        api = platform.stack.sign_in()
        print(f"conversations bench ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})")
        fill(dovecot, args.messages, args.senders, args.fresh)
        got, seconds = imaplib_reference(dovecot)
        print(f"  imaplib fetch of {got} messages: {seconds:.2f} s ({got / seconds:.0f}/s)")
        known = []
        for i in range(min(args.senders, 10)):  # some senders are known contacts
            known.append(api.post("/contacts", json={"first_name": f"Client{i}",
                                                     "emails": [f"client{i}@bench.test"]}).json())
        before = cpu_seconds(platform)
        start = time.perf_counter()
        box = api.post("/mailboxes", json={
            "name": "bench", "address": BOX, "poll_seconds": 1,
            "imap": {"host": "127.0.0.1", "port": dovecot.port, "security": "starttls",
                     "username": BOX, "password": "bench-pw", "verify_tls": False},
            "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none",
                     "username": BOX, "password": "x"}}).json()
        synced = 0
        while synced < args.messages and time.perf_counter() - start < 600:
            time.sleep(0.5)
            synced = api.get(f"/mailboxes/{box['id']}").json()["state"]["synced"]
        seconds = time.perf_counter() - start
        kind = "dated now (news)" if args.fresh else "dated over the past year (history)"
        print(f"  service sync of {synced} messages {kind}: {seconds:.2f} s ({synced / seconds:.0f}/s) "
              f"{cpu_note(before, cpu_seconds(platform), max(synced, 1))}")
        # new mail pushed by IDLE, from a known client: time from delivery until it is
        # stored, and until it is on the client's timeline (after whatever the followers
        # still have to do of the sync's own events)
        waits, shown = [], []
        for i in range(5):
            t = time.perf_counter()
            sender = known[i % len(known)] if known else None
            address = f"client{i % len(known)}@bench.test" if known else f"late{i}@bench.test"
            dovecot.deliver(BOX, f"From: {address}\r\nSubject: late {i}\r\n"
                                 f"Message-ID: <late-{i}@bench.test>\r\n\r\nnew\r\n")
            while api.get(f"/mailboxes/{box['id']}").json()["state"]["synced"] < synced + i + 1:
                if time.perf_counter() - t > 60:
                    break
                time.sleep(0.05)
            waits.append(time.perf_counter() - t)
            while sender is not None and time.perf_counter() - t < 120:
                items = api.get(f"/contacts/{sender['id']}/timeline",
                                params={"limit": 20}).json()["items"]
                if any((e.get("data") or {}).get("subject") == f"late {i}" for e in items):
                    break
                time.sleep(0.05)
            shown.append(time.perf_counter() - t)
        print(f"  new mail stored after (IDLE): median {sorted(waits)[2]:.2f} s, "
              f"max {max(waits):.2f} s; on the client's timeline after: median "
              f"{sorted(shown)[2]:.2f} s, max {max(shown):.2f} s")
        outbound(platform, api, sink, args)
    finally:
        platform.close()
        sink.stop()
        dovecot.stop()


if __name__ == "__main__":
    main()
