"""Real mail servers for the conversations tests and bench: Debian's Dovecot (IMAP with
STARTTLS and implicit TLS, IDLE) run from a config file of its own in a throwaway folder,
and an SMTP server (aiosmtpd) that delivers what it accepts into the recipients' Dovecot
INBOX (so a reply sent from the CRM can be read back over IMAP in the client's mailbox).

As root, Dovecot keeps its default unprivileged login users; the mail user is the packaged
`dovecot` user, whose uid is below the default first_valid_uid (500), so the config lowers it."""
import email
import email.policy
import imaplib
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time

from aiosmtpd.controller import Controller

from tests.stack import free_port, wait_port

CONFIG = """\
base_dir = {root}/run
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
state_dir = {root}/state
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
"""


class Dovecot:
    """`users` maps login -> password (a login is usually the address)."""

    def __init__(self, users):
        self.users = dict(users)
        self.root = tempfile.mkdtemp(prefix="crm-dovecot-")
        os.chmod(self.root, 0o755)
        self.port, self.tls_port = free_port(), free_port()
        self.proc = None
        self.host = "127.0.0.1"

    def start(self):
        account = pwd.getpwnam("dovecot")
        os.makedirs(f"{self.root}/mail")
        os.makedirs(f"{self.root}/state")
        os.chown(f"{self.root}/mail", account.pw_uid, account.pw_gid)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-keyout", f"{self.root}/key.pem",
                        "-out", f"{self.root}/cert.pem"], check=True, capture_output=True)
        self.write_users()
        config = f"{self.root}/dovecot.conf"
        with open(config, "w") as f:
            f.write(CONFIG.format(root=self.root, uid=account.pw_uid, gid=account.pw_gid,
                                  port=self.port, tls_port=self.tls_port))
        # -F: in the foreground, a child of this process (stopped with it)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.tls_port)
        return self

    def write_users(self):
        with open(f"{self.root}/users", "w") as f:
            for login, password in self.users.items():
                f.write(f"{login}:{{PLAIN}}{password}::::::\n")

    def add_user(self, login, password):
        self.users[login] = password
        self.write_users()  # passwd-file is re-read when it changes

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self):
        try:
            with open(f"{self.root}/dovecot.log") as f:
                return f.read()
        except OSError:
            return ""

    # a client's view, as the tests read and deliver mail
    def connect(self, login):
        conn = imaplib.IMAP4_SSL(self.host, self.tls_port,
                                 ssl_context=ssl._create_unverified_context())
        conn.login(login, self.users[login])
        return conn

    def deliver(self, login, raw, folder="INBOX"):
        """Put a message into a mailbox as a delivery agent would."""
        conn = self.connect(login)
        try:
            data = raw if isinstance(raw, bytes) else raw.encode()
            typ, answer = conn.append(folder, None, imaplib.Time2Internaldate(time.time()), data)
            assert typ == "OK", answer
        finally:
            conn.logout()

    def messages(self, login, folder="INBOX"):
        conn = self.connect(login)
        try:
            conn.select(folder, readonly=True)
            typ, data = conn.uid("SEARCH", None, "ALL")
            out = []
            for uid in data[0].split():
                typ, fetched = conn.uid("FETCH", uid, "(RFC822)")
                out.append(email.message_from_bytes(fetched[0][1], policy=email.policy.default))
            return out
        finally:
            conn.logout()

    def wait_messages(self, login, count, folder="INBOX", timeout=20):
        deadline = time.time() + timeout
        while True:
            found = self.messages(login, folder)
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.2)


class SmtpRelay:
    """An SMTP server that accepts mail (AUTH not required) and delivers each copy into the
    recipient's Dovecot INBOX when the recipient is a Dovecot user, else keeps it in
    `messages`. A recipient starting with "tempfail" gets 451."""

    def __init__(self, dovecot):
        self.dovecot = dovecot
        self.messages = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("tempfail"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            self.messages.append({"from": envelope.mail_from, "to": rcpt,
                                  "raw": envelope.content})
            if rcpt in self.dovecot.users:
                self.dovecot.deliver(rcpt, envelope.content)
        return "250 Message accepted"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def to(self, address):
        return [m for m in self.messages if m["to"] == address]
