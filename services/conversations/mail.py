"""E-mail on the wire: IMAP (TLS, STARTTLS, login, UID fetches, IDLE, APPEND, a search
for a Message-ID) and SMTP, plus reading a raw message into what is stored (plain text
kept, HTML sanitised, attachments within the size limit) and building an outgoing one with
its threading headers. No database here: the sync and the sender drive these."""
import email
import email.header
import email.policy
import email.utils
import imaplib
import logging
import re
import select as _select
import smtplib
import ssl
import time
from datetime import timezone
from email.message import EmailMessage

import nh3

log = logging.getLogger(__name__)

PREVIEW = 200
TEXT_LIMIT = 200_000
HTML_LIMIT = 500_000
MSGID = re.compile(r"<[^<>\s]{1,900}>")
SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.I)
EXISTS = re.compile(rb"^\* \d+ EXISTS", re.I)
UNFOLD = re.compile(r"\r?\n(?=[ \t])")


class MailError(Exception):
    """A mailbox problem people can act on (wrong password, server unreachable)."""


_CONTEXTS = {}


def _context(verify):
    """One TLS context per kind for the process (loading the CA store costs milliseconds
    per connection)."""
    if verify not in _CONTEXTS:
        _CONTEXTS[verify] = ssl.create_default_context() if verify else \
            ssl._create_unverified_context()  # noqa: S323 - an admin's explicit choice
    return _CONTEXTS[verify]


# --- IMAP ---------------------------------------------------------------------------------

def imap_connect(server, password, timeout):
    """A logged-in IMAP connection; MailError says what went wrong."""
    host, port, security = server["host"], server["port"], server.get("security", "tls")
    try:
        if security == "tls":
            conn = imaplib.IMAP4_SSL(host, port, ssl_context=_context(server.get("verify_tls", True)),
                                     timeout=timeout)
        else:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
            if security == "starttls":
                conn.starttls(ssl_context=_context(server.get("verify_tls", True)))
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailError(f"IMAP server {host}:{port} unreachable: {exc}") from exc
    try:
        conn.login(server["username"], password)
    except imaplib.IMAP4.error as exc:
        _close(conn)
        raise MailError(f"IMAP login refused for {server['username']}: {_text(exc)}") from exc
    return conn


def _text(exc):
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _close(conn):
    try:
        conn.logout()
    except Exception:  # noqa: BLE001 - closing a broken connection
        try:
            conn.shutdown()
        except Exception:  # noqa: BLE001
            pass


close = _close


def _quote(folder):
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def select(conn, folder, readonly=True):
    """-> UIDVALIDITY of the folder."""
    typ, data = conn.select(_quote(folder), readonly=readonly)
    if typ != "OK":
        raise MailError(f"cannot open folder {folder}: {data}")
    typ, data = conn.response("UIDVALIDITY")
    return int(data[0]) if data and data[0] else 0


def new_uids(conn, after_uid):
    typ, data = conn.uid("SEARCH", None, f"UID {int(after_uid) + 1}:*")
    if typ != "OK":
        raise MailError(f"UID SEARCH failed: {data}")
    # `n:*` names the last message even when its UID is below n
    return sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > after_uid)


def fetch(conn, uids, max_bytes):
    """{uid: raw bytes or None (larger than max_bytes: headers only, as bytes + size)}."""
    out = {}
    if not uids:
        return out
    typ, data = conn.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)")
    sizes = {}
    for item in data or []:
        line = item if isinstance(item, bytes) else item[0]
        m = re.search(rb"UID (\d+)", line)
        s = re.search(rb"RFC822\.SIZE (\d+)", line)
        if m and s:
            sizes[int(m.group(1))] = int(s.group(1))
    small = [u for u in uids if sizes.get(u, 0) <= max_bytes]
    large = [u for u in uids if sizes.get(u, 0) > max_bytes]
    for part, what in ((small, "BODY.PEEK[]"), (large, "BODY.PEEK[HEADER]")):
        if not part:
            continue
        typ, data = conn.uid("FETCH", ",".join(map(str, part)), f"(UID {what})")
        if typ != "OK":
            raise MailError(f"UID FETCH failed: {data}")
        for item in data or []:
            if isinstance(item, tuple):
                m = re.search(rb"UID (\d+)", item[0])
                if m:
                    uid = int(m.group(1))
                    out[uid] = (item[1], sizes.get(uid, len(item[1])), what.endswith("[HEADER]"))
    return out


class _Lines:
    """Lines read straight from the socket with a deadline. imaplib's buffered file is
    unusable after a socket timeout, so IDLE (which waits on purpose) reads here; between
    commands imaplib's buffer is empty (every answer ended with its tagged line)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pending = getattr(self.sock, "pending", None)
            if not (pending and pending()):
                ready, _, _ = _select.select([self.sock], [], [], left)
                if not ready:
                    return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MailError("IMAP server closed the connection during IDLE")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"


def idle_wait(conn, seconds):
    """IDLE until the server says a message arrived (True) or `seconds` pass (False)."""
    tag = conn._new_tag()
    conn.send(tag + b" IDLE\r\n")
    lines = _Lines(conn.sock)
    line = lines.line(30)
    if not line or not line.startswith(b"+"):
        raise MailError(f"IDLE refused: {line!r}")
    arrived = False
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        line = lines.line(left) if left > 0 else None
        if line is None:
            break
        if EXISTS.match(line):
            arrived = True
            break
    conn.send(b"DONE\r\n")
    while True:
        line = lines.line(30)
        if line is None:
            raise MailError("IMAP server did not end IDLE")
        if line.startswith(tag):
            break
    return arrived


def offers_idle(conn):
    return "IDLE" in conn.capabilities


def append(conn, folder, raw):
    typ, data = conn.append(_quote(folder), r"(\Seen)", imaplib.Time2Internaldate(time.time()), raw)
    if typ != "OK":
        raise MailError(f"APPEND to {folder} failed: {data}")


APPEND_BATCH_BYTES = 4 << 20  # the most one APPEND command carries


def append_many(conn, folder, raws):
    """The copies `raws` in `folder`: in one command per few MB when the server offers
    MULTIAPPEND (RFC 3502) and LITERAL+ (RFC 7888) (Dovecot, Cyrus...): one round trip
    for a batch, where APPEND is two per message (the literal waits for the server's
    go-ahead); else one APPEND each. A MULTIAPPEND is all or nothing."""
    if len(raws) > 1 and _offers(conn, "MULTIAPPEND", "LITERAL+"):
        batch, size = [], 0
        for raw in raws:
            if batch and size + len(raw) > APPEND_BATCH_BYTES:
                _multiappend(conn, folder, batch)
                batch, size = [], 0
            batch.append(raw)
            size += len(raw)
        _multiappend(conn, folder, batch)
        return
    for raw in raws:
        append(conn, folder, raw)


def _offers(conn, *capabilities):
    """Whether the logged-in server offers them (asked once per connection: the
    capabilities before login may list fewer)."""
    found = getattr(conn, "crm_capabilities", None)
    if found is None:
        typ, data = conn.capability()
        found = set((data[0] or b"").decode(errors="replace").upper().split()) \
            if typ == "OK" and data else set()
        conn.crm_capabilities = found
    return all(c in found for c in capabilities)


def _multiappend(conn, folder, raws):
    date = imaplib.Time2Internaldate(time.time()).encode()
    parts = [b"APPEND ", _quote(folder).encode()]
    for raw in raws:
        literal = imaplib.MapCRLF.sub(imaplib.CRLF, raw)
        parts += [b" (\\Seen) ", date, b" {%d+}\r\n" % len(literal), literal]
    tag = conn._new_tag()
    try:
        conn.send(tag + b" " + b"".join(parts) + b"\r\n")
        typ, data = conn._command_complete("APPEND", tag)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise MailError(f"APPEND to {folder} failed: {exc}") from exc
    if typ != "OK":
        raise MailError(f"APPEND to {folder} failed: {data}")


def has_message_id(conn, folder, message_id):
    """Whether a copy with this Message-ID is in `folder` (the sender's proof after a crash)."""
    select(conn, folder, readonly=True)
    typ, data = conn.uid("SEARCH", None, "HEADER", "Message-ID", _quote(message_id))
    return typ == "OK" and bool((data[0] or b"").split())


# --- SMTP ---------------------------------------------------------------------------------

def smtp_open(server, password, timeout):
    """A connected (and logged-in, when the server offers AUTH) SMTP client."""
    host, port, security = server["host"], server["port"], server.get("security", "tls")
    ctx = _context(server.get("verify_tls", True))
    try:
        if security == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ctx)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
            if security == "starttls":
                client.starttls(context=ctx)
        client.ehlo_or_helo_if_needed()
        if server.get("username") and password and client.has_extn("auth"):
            client.login(server["username"], password)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP {host}:{port}: {exc}") from exc
    return client


class Unconfirmed(MailError):
    """The connection broke after the message's end was handed over: the server may
    have taken it. Sending it again could send it twice."""


def smtp_deliver(client, msg, before_data=None):
    """Hand `msg` over on an open client: MAIL, RCPT, then `before_data()` (the sender
    writes that the server may now take it), then DATA. MailError: refused, nothing
    taken; Unconfirmed: the answer to DATA was lost. smtplib.SMTPServerDisconnected
    before DATA passes through: a stale kept connection, nothing sent."""
    sender = (addresses(msg["From"]) or [{}])[0].get("address")
    recipients = [a["address"] for name in ("To", "Cc", "Bcc")
                  for a in addresses(msg.get_all(name) and ", ".join(map(str, msg.get_all(name))))]
    del msg["Bcc"]
    data = msg.as_bytes(policy=email.policy.SMTP)
    try:
        client.ehlo_or_helo_if_needed()
        code, answer = client.mail(sender or "")
        if code != 250:
            _reset(client)
            raise MailError(f"sender refused: {code} {_text_of(answer)}")
        refused = {}
        for address in recipients:
            code, answer = client.rcpt(address)
            if code not in (250, 251):
                refused[address] = f"{code} {_text_of(answer)}"
        if not recipients or len(refused) == len(recipients):
            _reset(client)
            raise MailError(f"recipients refused: {refused or 'none given'}")
    except smtplib.SMTPServerDisconnected:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"SMTP: {exc}") from exc
    if before_data is not None:
        before_data()
    try:
        code, answer = client.data(data)
    except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing sent
        _reset(client)
        raise MailError(f"SMTP DATA refused: {exc.smtp_code} {_text_of(exc.smtp_error)}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise Unconfirmed(f"SMTP connection lost while the server took the message: {exc}") \
            from exc
    if code != 250:
        _reset(client)
        raise MailError(f"SMTP refused the message: {code} {_text_of(answer)}")
    if refused:
        log.warning("SMTP refused some recipients: %s", refused)


def _reset(client):
    try:
        client.rset()
    except (smtplib.SMTPException, OSError):
        pass


def _text_of(answer):
    return answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)


def smtp_close(client):
    try:
        client.quit()
    except Exception:  # noqa: BLE001 - closing a broken connection
        client.close()


# --- reading ------------------------------------------------------------------------------

def addresses(value):
    out = []
    for name, addr in email.utils.getaddresses([str(value or "")]):
        addr = (addr or "").strip().lower()
        if "@" in addr and len(addr) <= 254 and " " not in addr:
            out.append({"address": addr, "name": (name or "").strip()[:200]})
    return out


class _Read(EmailMessage):
    """get_body / iter_attachments over headers kept as text (compat32)."""

    def is_attachment(self):
        return self.get_content_disposition() == "attachment"


def _header(msg, name):
    """A header's text: unfolded, its encoded words decoded (an unknown charset, or raw
    8-bit bytes, read as UTF-8 with replacements); None when absent or unreadable."""
    try:
        value = msg.get(name)
        if value is None:
            return None
        if isinstance(value, str) and "=?" not in value:
            return UNFOLD.sub("", value).strip()
        out = []
        for chunk, charset in email.header.decode_header(value):
            if isinstance(chunk, bytes):
                try:
                    chunk = chunk.decode(charset or "ascii", errors="replace")
                except LookupError:
                    chunk = chunk.decode("utf-8", errors="replace")
            out.append(chunk)
        return UNFOLD.sub("", "".join(out)).strip()
    except Exception:  # noqa: BLE001 - a malformed header reads as absent
        return None


def message_ids(value):
    return MSGID.findall(str(value or ""))


def subject_key(subject):
    return re.sub(r"\s+", " ", SUBJECT_PREFIX.sub("", subject or "")).strip().lower()[:300]


def _content(part):
    """A text part's words by its charset (an unknown one: UTF-8 with replacements)."""
    payload = part.get_payload(decode=True) or b""
    try:
        return payload.decode(part.get_content_charset() or "ascii", errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return payload.decode("utf-8", errors="replace")


def sanitize(html):
    return nh3.clean(html[:HTML_LIMIT]) if html else None


def parse(raw, max_attachment_bytes, headers_only=False, size=None):
    """A raw message -> the stored fields and the attachments' bytes:
    (fields, [(meta, bytes or None)])."""
    # compat32 reads the structure without the header registry (policy.default parsed every
    # header into objects: 1.7 ms of the 2.2 ms of CPU a synced message cost); the few
    # headers used are decoded here, the bodies by their charset
    msg = email.message_from_bytes(raw, _class=_Read, policy=email.policy.compat32)
    message_id = (message_ids(_header(msg, "Message-ID")) or [None])[0]
    refs = message_ids(_header(msg, "References"))
    in_reply_to = (message_ids(_header(msg, "In-Reply-To")) or [None])[0]
    sender = (addresses(_header(msg, "From")) or [{"address": None, "name": ""}])[0]
    try:
        date = email.utils.parsedate_to_datetime(_header(msg, "Date") or "")
    except (TypeError, ValueError, IndexError):
        date = None
    if date is not None and date.tzinfo is None:  # "-0000": UTC, the zone unknown (RFC 5322)
        date = date.replace(tzinfo=timezone.utc)
    text = html = None
    attachments = []
    if headers_only:
        text = f"(message of {size} bytes not downloaded: over the size limit)"
    else:
        try:
            plain = msg.get_body(("plain",))
            rich = msg.get_body(("html",))
        except Exception:  # noqa: BLE001 - malformed MIME: the raw payload as text
            plain = rich = None
        if plain is not None:
            text = _content(plain)
        if rich is not None:
            html = sanitize(_content(rich))
        if plain is None and rich is None and not msg.is_multipart():
            text = _content(msg)
        if text is None and html:
            text = nh3.clean(html, tags=set()).strip()
        try:
            parts = list(msg.iter_attachments())
        except Exception:  # noqa: BLE001
            parts = []
        for part in parts:
            data = part.get_payload(decode=True) or b""
            name = part.get_filename()
            if name and "=?" in name:
                name = _header({"name": name}, "name")
            meta = {"filename": (name or "attachment")[:255],
                    "content_type": part.get_content_type(), "size": len(data), "skipped": None}
            if len(data) > max_attachment_bytes:
                meta["skipped"] = f"over the {max_attachment_bytes} bytes limit"
                data = None
            attachments.append((meta, data))
    fields = {
        "message_id": message_id, "in_reply_to": in_reply_to, "references": refs[-50:],
        "subject": (_header(msg, "Subject") or "")[:998], "from": sender,
        "to": addresses(_header(msg, "To"))[:100], "cc": addresses(_header(msg, "Cc"))[:100],
        "date": date, "text": (text or "")[:TEXT_LIMIT], "html": html,
        "auto": bool(_header(msg, "Auto-Submitted") not in (None, "no")),
    }
    return fields, attachments


def build(mailbox, to, subject, text, html, message_id, in_reply_to, references, attachments):
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((mailbox.get("display_name") or "", mailbox["address"]))
    msg["To"] = ", ".join(email.utils.formataddr((t.get("name") or "", t["address"])) for t in to)
    msg["Subject"] = subject or ""
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references[-20:])
    msg.set_content(text or "")
    if html:
        msg.add_alternative(html, subtype="html")
    for meta, data in attachments:
        maintype, _, subtype = (meta.get("content_type") or "application/octet-stream").partition("/")
        msg.add_attachment(data, maintype=maintype or "application",
                           subtype=subtype or "octet-stream", filename=meta["filename"])
    return msg


def new_message_id(address):
    domain = address.rpartition("@")[2] or "crm.local"
    return email.utils.make_msgid(domain=domain)
