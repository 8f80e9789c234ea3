"""Conversations speed: a mailbox synced by the service (every message parsed, matched to
a contact over RPC, threaded, stored with its event) beside raw imaplib fetching the same
mailbox; and outbound e-mail through the service's queue (stored, claimed, SMTP, a copy
APPENDed to Sent, marked sent with its event) beside raw smtplib sending the same number.

    .venv/bin/python bench/bench_conversations.py [--messages 300] [--outbound 50]

Starts an isolated stack (tests/stack.py), a Dovecot and an SMTP sink (tests/mail_servers.py,
tests/fake_receivers.py). The issue's targets are 10,000 messages synced in under 60 s and
100 outbound messages/s; the default sizes are a smoke run.
"""
import argparse
import email.message
import email.utils
import imaplib
import os
import smtplib
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import Platform, cpu_note, cpu_seconds  # noqa: E402
from crm_common.errors import Timeout  # noqa: E402
from tests.fake_receivers import SmtpReceiver  # noqa: E402
from tests.mail_servers import Dovecot  # noqa: E402

BOX = "bench@crm.test"


def fill(dovecot, n, senders):
    conn = dovecot.connect(BOX)
    for i in range(n):
        msg = email.message.EmailMessage()
        msg["From"] = f"Client {i % senders} <client{i % senders}@bench.test>"
        msg["To"] = BOX
        msg["Subject"] = f"Question {i % 40}"
        msg["Message-ID"] = f"<bench-{i}@bench.test>"
        msg["Date"] = email.utils.formatdate()
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--senders", type=int, default=30)
    parser.add_argument("--outbound", type=int, default=50)
    args = parser.parse_args()
    dovecot = Dovecot({BOX: "bench-pw"}).start()
    sink = SmtpReceiver().start()
    platform = Platform()
    try:
        api = platform.stack.sign_in()
        print(f"conversations bench ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})")
        fill(dovecot, args.messages, args.senders)
        got, seconds = imaplib_reference(dovecot)
        print(f"  imaplib fetch of {got} messages: {seconds:.2f} s ({got / seconds:.0f}/s)")
        for i in range(min(args.senders, 10)):  # some senders are known contacts
            api.post("/contacts", json={"first_name": f"Client{i}",
                                        "emails": [f"client{i}@bench.test"]})
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
        print(f"  service sync of {synced} messages: {seconds:.2f} s ({synced / seconds:.0f}/s) "
              f"{cpu_note(before, cpu_seconds(platform), max(synced, 1))}")
        # new mail pushed by IDLE: time from delivery until it is stored
        waits = []
        for i in range(5):
            t = time.perf_counter()
            dovecot.deliver(BOX, f"From: late{i}@bench.test\r\nSubject: late {i}\r\n"
                                 f"Message-ID: <late-{i}@bench.test>\r\n\r\nnew\r\n")
            while api.get(f"/mailboxes/{box['id']}").json()["state"]["synced"] < synced + i + 1:
                if time.perf_counter() - t > 60:
                    break
                time.sleep(0.05)
            waits.append(time.perf_counter() - t)
        print(f"  new mail stored after (IDLE): median {sorted(waits)[2]:.2f} s, "
              f"max {max(waits):.2f} s")
        contact = api.post("/contacts", json={"first_name": "Out",
                                              "emails": ["out@bench.test"]}).json()
        me = api.get("/users/me").json()["id"]
        before = cpu_seconds(platform)
        start = time.perf_counter()

        def queue(i):  # as automation's campaigns do: one call per message, 8 at a time,
            for _ in range(5):  # a timed-out call again with its idempotency key
                try:
                    return platform.stack.rpc.call(
                        "conversations", "send_to_contact", contact["id"], "email",
                        f"Message {i}", subject=f"Bench {i}", sender_user_id=me,
                        idempotency_key=f"bench-{i}", timeout=30)
                except Timeout:
                    retried.append(i)
            raise RuntimeError(f"message {i} not queued")
        retried = []
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(queue, range(args.outbound)))
        queued = time.perf_counter() - start
        while len(sink.to("out@bench.test")) < args.outbound and \
                time.perf_counter() - start < 600:
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        sent = len(sink.to("out@bench.test"))
        print(f"  service outbound: {sent} sent in {seconds:.2f} s ({sent / seconds:.1f}/s; "
              f"queued in {queued:.2f} s, {len(retried)} calls timed out and made again) "
              f"{cpu_note(before, cpu_seconds(platform), max(sent, 1))}")
        ref = smtplib_reference(sink.port, args.outbound)
        print(f"  smtplib reference (one connection): {args.outbound} sent in {ref:.2f} s "
              f"({args.outbound / ref:.0f}/s)")
        doubled = sent - len({m["message"]["Message-ID"] for m in sink.to("out@bench.test")})
        print(f"  outbound doubled: {doubled}, lost: {args.outbound - sent}")
    finally:
        platform.close()
        sink.stop()
        dovecot.stop()


if __name__ == "__main__":
    main()
