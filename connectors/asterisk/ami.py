"""The AMI side: a plain-socket client for Asterisk's Manager Interface (banner, Login with
an ActionID, then a stream of "Key: Value" messages ended by an empty line)."""
import itertools
import logging
import queue
import socket
import threading

log = logging.getLogger("connectors.asterisk")

# the events the ingest turns into call facts (services/telephony/providers/asterisk.py)
FORWARDED = frozenset(("Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "Hangup", "Cdr"))
# AMI event classes that carry them: Newchannel..Hangup are "call", Cdr is "cdr"
EVENT_CLASSES = "call,cdr"


class AmiError(Exception):
    """The AMI dialogue failed (refused login, closed connection, no banner)."""


class AmiClient:
    def __init__(self, host, port, username, secret, timeout=10.0, keepalive_s=20.0):
        self.host, self.port = host, port
        self.username, self.secret = username, secret
        self.timeout, self.keepalive_s = timeout, keepalive_s
        self.sock, self.buffer, self.pinged = None, b"", False
        self.logged_in = False
        self._ids = itertools.count(1)
        self.prefix = f"crm-{id(self):x}"
        # actions sent by other threads (click-to-call) on this connection: the reader
        # hands each message carrying their ActionID to the waiting queue
        self._send_lock = threading.Lock()
        self._waiters = {}

    def _send(self, action, pairs=(), **headers):
        action_id = f"{self.prefix}-{next(self._ids)}"
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in list(pairs) + list(headers.items())]
        sock = self.sock
        if sock is None:
            raise AmiError("the AMI connection closed")
        with self._send_lock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def send_action(self, action, pairs):
        """Sends an action on the logged-in connection (from any thread); returns
        (action id, queue of the messages carrying that ActionID). `release` it after."""
        sock = self.sock
        if sock is None or not self.logged_in:
            raise AmiError("not logged in to AMI")
        action_id = f"{self.prefix}-{next(self._ids)}"
        waiter = self._waiters[action_id] = queue.Queue()
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in pairs]
        try:
            with self._send_lock:
                sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        except OSError as exc:
            self.release(action_id)
            raise AmiError(f"AMI send failed: {exc}") from exc
        return action_id, waiter

    def release(self, action_id):
        self._waiters.pop(action_id, None)

    def _fail_waiters(self, reason):
        for waiter in list(self._waiters.values()):
            waiter.put({"_error": reason})

    def _line(self):
        # own buffering: a socket file object cannot be read again after a timeout
        while b"\n" not in self.buffer:
            sock = self.sock  # None once closed by another thread (settings, stop)
            if sock is None:
                raise AmiError("the AMI connection closed")
            data = sock.recv(65536)
            if not data:
                raise AmiError("the AMI connection closed")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def _read(self):
        """One message as a dict (header names as keys; a repeated header keeps its last
        value), or AmiError when the connection closed."""
        message = {}
        while True:
            line = self._line()
            if not line:
                if message:
                    return message
                continue
            key, sep, value = line.partition(":")
            if sep:
                message[key.strip()] = value.strip()

    def connect(self):
        self.close()
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.buffer, self.pinged = b"", False
        banner = self._line().strip()
        if not banner.startswith("Asterisk Call Manager"):
            raise AmiError(f"not an AMI banner: {banner!r}")
        action_id = self._send("Login", Username=self.username, Secret=self.secret,
                               Events=EVENT_CLASSES)
        while True:
            message = self._read()
            if message.get("ActionID") == action_id and "Response" in message:
                break
        if message["Response"] != "Success":
            raise AmiError(f"AMI login refused: {message.get('Message', '')}")
        self.logged_in = True
        # from here on a quiet line is pinged, so a dead peer is noticed
        self._timeout(self.keepalive_s)
        log.info("logged in to AMI at %s:%s (%s)", self.host, self.port, banner)

    def events(self):
        """The forwarded events, as they come, until the connection fails (AmiError)."""
        while True:
            try:
                message = self._read()
            except socket.timeout:
                self._ping()
                continue
            except OSError as exc:
                raise AmiError(f"AMI read failed: {exc}") from exc
            if self.pinged:
                self.pinged = False
                self._timeout(self.keepalive_s)
            waiter = self._waiters.get(message.get("ActionID"))
            if waiter is not None:
                waiter.put(message)
            if message.get("Event") in FORWARDED:
                yield message

    def _ping(self):
        if self.pinged:
            raise AmiError("AMI silent after a Ping")
        self.pinged = True
        try:
            self._send("Ping")
        except OSError as exc:
            raise AmiError(f"AMI ping failed: {exc}") from exc
        # the answer arrives among events; a peer that stays silent times out the next read
        self._timeout(self.timeout)

    def _timeout(self, seconds):
        sock = self.sock
        if sock is None:
            raise AmiError("the AMI connection closed")
        sock.settimeout(seconds)

    def close(self):
        self.logged_in = False
        self._fail_waiters("the AMI connection closed")
        # taken first: the reader thread, woken by the shutdown, closes too
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
