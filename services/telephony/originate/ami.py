"""Asterisk Manager Interface (AMI) Originate over its TCP line protocol.

A message is "Key: Value" lines ending with an empty line (CRLF). The dialogue:
  <- "Asterisk Call Manager/x.y.z" banner
  -> Action: Login (Username, Secret)        <- Response: Success
  -> Action: Originate (Async: true)         <- Response: Success ("queued")
  <- Event: OriginateResponse (same ActionID; Response Success/Failure, Reason code)
  -> Action: Logoff                          <- Response: Goodbye
Async originate answers at once; the OriginateResponse comes when the agent's phone
answered or failed, so it is awaited in the background (`follow`)."""
import socket
import time

# OriginateResponse Reason codes (Asterisk's AST_CONTROL_* values)
REASONS = {"0": "failed", "1": "no_answer", "3": "no_answer", "4": "answered", "5": "busy",
           "8": "failed"}
CONNECT_TIMEOUT_S = 5


class AmiError(Exception):
    pass


class AmiSession:
    def __init__(self, host, port, timeout=CONNECT_TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.counter = 0
        self.banner = self._line()
        if not self.banner.startswith("Asterisk Call Manager"):
            self.close()
            raise AmiError(f"not an AMI server: {self.banner!r}")

    def _line(self):
        raw = self.reader.readline()
        if not raw:
            raise AmiError("AMI connection closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, action, pairs, prefix):
        self.counter += 1
        action_id = f"{prefix}-{self.counter}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in pairs]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def read(self):
        message = {}
        while True:
            line = self._line()
            if not line:
                if message:
                    return message
                continue
            key, _, value = line.partition(":")
            message.setdefault(key.strip(), value.strip())

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AmiError("no answer from AMI in time")
            self.sock.settimeout(remaining)
            try:
                message = self.read()
            except socket.timeout:
                raise AmiError("no answer from AMI in time")
            if predicate(message):
                return message

    def action(self, action, pairs, prefix, timeout=CONNECT_TIMEOUT_S):
        action_id = self.send(action, pairs, prefix)
        response = self.wait(lambda m: m.get("ActionID") == action_id and "Response" in m
                             and "Event" not in m, timeout)
        return action_id, response

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def originate_fields(settings, job):
    """The Originate's headers: ring the agent's channel, then dial the number."""
    caller_id = job.get("caller_id") or job["to"]
    return [
        ("Channel", settings.ami_channel.format(extension=job["extension"])),
        ("Context", settings.ami_context),
        ("Exten", job["to"]),
        ("Priority", "1"),
        ("CallerID", f"\"{job.get('callee_name') or job['to']}\" <{caller_id}>"),
        ("Timeout", str(int(settings.ami_timeout_s * 1000))),
        ("Async", "true"),
        ("Variable", f"CRM_CALL_ID={job['call_id']}"),
    ]


def final_status(event):
    """The click-to-call outcome an OriginateResponse tells."""
    ok = event.get("Response") == "Success"
    return REASONS.get(event.get("Reason"), "answered" if ok else "failed")


def not_configured(settings):
    """Why this adapter cannot be used (None: it can)."""
    if not settings.ami_host or not settings.ami_username or not settings.ami_secret:
        return "the AMI host, username and secret are not all set"
    return None


def request(settings, job):
    """Login and Originate; returns (status dict, session to `follow`)."""
    prefix = f"crm-{job['call_id']}"
    try:
        session = AmiSession(settings.ami_host, settings.ami_port)
    except (OSError, AmiError) as exc:
        return {"status": "failed", "reason": f"AMI connect: {exc}"}, None
    try:
        _, login = session.action("Login", [("Username", settings.ami_username),
                                            ("Secret", settings.ami_secret)], prefix)
        if login.get("Response") != "Success":
            session.close()
            return {"status": "failed", "reason": f"AMI login: {login.get('Message')}"}, None
        action_id, answer = session.action("Originate", originate_fields(settings, job), prefix)
    except (OSError, AmiError) as exc:
        session.close()
        return {"status": "failed", "reason": f"AMI: {exc}"}, None
    if answer.get("Response") != "Success":
        _logoff(session, prefix)
        return {"status": "failed", "reason": answer.get("Message")}, None
    session.originate_action_id = action_id
    return {"status": "queued", "reason": answer.get("Message")}, session


def follow(settings, session, job):
    """Wait for the OriginateResponse of our Originate, then log off."""
    prefix = f"crm-{job['call_id']}"
    try:
        event = session.wait(lambda m: m.get("Event") == "OriginateResponse"
                             and m.get("ActionID") == session.originate_action_id,
                             settings.ami_timeout_s + 5)
    except (OSError, AmiError) as exc:
        session.close()
        return {"status": "unknown", "reason": str(exc)}
    _logoff(session, prefix)
    return {"status": final_status(event),
            "reason": event.get("Reason"), "pbx_call_id": event.get("Uniqueid"),
            "channel": event.get("Channel")}


def _logoff(session, prefix):
    try:
        session.action("Logoff", [], prefix)
    except (OSError, AmiError):
        pass  # the PBX may simply close the connection
    session.close()
