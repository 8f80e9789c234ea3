"""A small AMI-speaking TCP server for tests: it plays Asterisk's side of the Manager
Interface dialogue (banner, Login, Originate, OriginateResponse, Ping, Logoff) and checks every
line the client sends: CRLF line ends, "Key: Value" form, the action order, the login
secret. Whatever it did not like is in `errors`; every message it got is in `received`
(a list of line lists), so a test can assert the exact lines.

For a connector following events: `emit(events)` writes AMI events (dicts) to every
logged-in client, or keeps them until one logs in; `drop()` closes every connection as a
crashed or restarted Asterisk would; `logins` counts accepted Logins."""
import re
import socket
import threading
import time

BANNER = "Asterisk Call Manager/5.0.1\r\n"
_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*: .*$")


class AmiServer:
    def __init__(self, port=0, username="crm", secret="s3cret", reason="4", delay=0.3):
        self.username, self.secret = username, secret
        self.reason, self.delay = reason, delay  # OriginateResponse Reason and its delay
        self.received, self.errors, self.sessions = [], [], 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.logins, self.clients, self.pending = 0, [], []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _read_message(self, reader):
        lines = []
        while True:
            raw = reader.readline()
            if not raw:
                return None
            if not raw.endswith(b"\r\n"):
                self.errors.append(f"line not ended with CRLF: {raw!r}")
            line = raw.decode().rstrip("\r\n")
            if not line:
                if lines:
                    return lines
                continue
            if not _HEADER.match(line):
                self.errors.append(f"not a 'Key: Value' line: {line!r}")
            lines.append(line)

    @staticmethod
    def _event_text(event):
        return "".join(f"{key}: {value}\r\n" for key, value in event.items()) + "\r\n"

    def emit(self, events):
        """Writes these events (dicts, "Event" first) to every logged-in client; with none,
        they wait for the next Login."""
        with self.lock:
            if not self.clients:
                self.pending.extend(events)
                return
            for conn in list(self.clients):
                try:
                    conn.sendall("".join(self._event_text(e) for e in events).encode())
                except OSError:
                    self.clients.remove(conn)

    def drop(self):
        """Closes every client connection (the listening socket stays open)."""
        with self.lock:
            clients, self.clients = self.clients, []
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _session(self, conn):
        self.sessions += 1
        reader = conn.makefile("rb")
        send = lambda text: conn.sendall(text.encode())  # noqa: E731
        send(BANNER)
        logged_in = False
        try:
            while True:
                lines = self._read_message(reader)
                if lines is None:
                    return
                self.received.append(lines)
                fields = dict(line.split(": ", 1) for line in lines if ": " in line)
                action, action_id = fields.get("Action"), fields.get("ActionID")
                if lines[0] != f"Action: {action}" or lines[1:2] != [f"ActionID: {action_id}"]:
                    self.errors.append(f"Action then ActionID must come first: {lines[:2]}")
                if action == "Login":
                    if fields.get("Username") == self.username and fields.get("Secret") == self.secret:
                        logged_in = True
                        with self.lock:
                            send(f"Response: Success\r\nActionID: {action_id}\r\n"
                                 "Message: Authentication accepted\r\n\r\n")
                            self.logins += 1
                            self.clients.append(conn)
                            pending, self.pending = self.pending, []
                            if pending:
                                send("".join(self._event_text(e) for e in pending))
                    else:
                        self.errors.append("bad login")
                        send(f"Response: Error\r\nActionID: {action_id}\r\n"
                             "Message: Authentication failed\r\n\r\n")
                elif action == "Originate":
                    if not logged_in:
                        self.errors.append("Originate before Login")
                        send(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Permission denied\r\n\r\n")
                        continue
                    send(f"Response: Success\r\nActionID: {action_id}\r\n"
                         "Message: Originate successfully queued\r\n\r\n")
                    time.sleep(self.delay)
                    # an unrelated event first: the client must wait for its own ActionID
                    send("Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/999-00000009\r\n"
                         "Uniqueid: 1700000000.9\r\nLinkedid: 1700000000.9\r\n\r\n")
                    response = "Success" if self.reason == "4" else "Failure"
                    send(f"Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {action_id}\r\n"
                         f"Response: {response}\r\nChannel: {fields.get('Channel')}-00000001\r\n"
                         f"Context: {fields.get('Context')}\r\nExten: {fields.get('Exten')}\r\n"
                         f"Reason: {self.reason}\r\nUniqueid: 1700000000.42\r\n"
                         f"CallerIDNum: <unknown>\r\nCallerIDName: <unknown>\r\n\r\n")
                elif action == "Ping":
                    send(f"Response: Success\r\nActionID: {action_id}\r\nPing: Pong\r\n"
                         f"Timestamp: {time.time():.6f}\r\n\r\n")
                elif action == "Logoff":
                    send(f"Response: Goodbye\r\nActionID: {action_id}\r\n"
                         "Message: Thanks for all the fish.\r\n\r\n")
                    return
                else:
                    self.errors.append(f"unexpected action {action!r}")
                    send(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Invalid/unknown command\r\n\r\n")
        except OSError:
            return  # dropped
        finally:
            with self.lock:
                if conn in self.clients:
                    self.clients.remove(conn)
            conn.close()

    def actions(self):
        return [dict(line.split(": ", 1) for line in m).get("Action") for m in self.received]

    def close(self):
        self._stop = True
        self.sock.close()
        self.drop()
