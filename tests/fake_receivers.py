"""Real local receivers for the notification channels: an SMTP server (aiosmtpd) and an HTTP
server that records every request (webhooks, SMS provider, Telegram Bot API) and answers
what the test planned per path (status codes, delays)."""
import email
import email.policy
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.stack import free_port


class SmtpReceiver:
    """Accepts mail on 127.0.0.1; a recipient starting with "reject" gets 550, one starting
    with "tempfail" gets 451."""

    def __init__(self):
        self.messages = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        if address.startswith("tempfail"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "message": message})
        return "250 Message accepted"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def to(self, address):
        return [m for m in self.messages if address in m["to"]]

    def wait_for(self, address, count=1, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return self.to(address)


class HttpRecorder:
    """Records every request; `plan(path, [503, 503, 200])` answers those in order on that
    path (then 200); `delay(path, seconds)` holds each answer on that path; `serve(path,
    body, content_type)` answers GETs of that path (others: 404).

    `telegram_bot(token, api="/tg")`: under `api`, the Bot API's own answers for that bot
    (https://core.telegram.org/bots/api#making-requests): sendMessage answers
    `{"ok": true, "result": Message}` with a message_id counted per bot, a planned 429
    answers `{"ok": false, "error_code": 429, "parameters": {"retry_after": 1}}`, other
    planned errors `{"ok": false, "error_code", "description"}`, and a token no bot was
    registered with gets 401 Unauthorized."""

    TELEGRAM_ERRORS = {400: "Bad Request: chat not found", 401: "Unauthorized",
                       403: "Forbidden: bot was blocked by the user",
                       429: "Too Many Requests: retry after 1", 502: "Bad Gateway"}

    def __init__(self):
        self.telegram_apis = set()
        self.telegram_bots = {}  # token -> messages sent so far
        self.requests = []
        self.lock = threading.Lock()
        self.plans = defaultdict(list)
        self.delays = {}
        self.files = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this, Nagle + delayed ACK
            # hold every keep-alive answer ~40 ms
            disable_nagle_algorithm = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                with recorder.lock:
                    recorder.requests.append({"path": path, "headers": dict(self.headers),
                                              "body": body, "at": time.time(),
                                              "client_port": self.client_address[1]})
                    plan = recorder.plans.get(path)
                    status = plan.pop(0) if plan else 200
                delay = recorder.delays.get(path)
                if delay:
                    time.sleep(delay)
                found = recorder.telegram_answer(path, status, body)
                if found is not None:
                    status, answer = found
                else:
                    answer = json.dumps({"ok": 200 <= status < 300}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):
                path = self.path.split("?")[0]
                with recorder.lock:
                    recorder.requests.append({"path": path, "headers": dict(self.headers),
                                              "body": b"", "at": time.time(), "method": "GET"})
                    body, content_type = recorder.files.get(path, (None, None))
                self.send_response(404 if body is None else 200)
                body = b'{"error": {"message": "not found"}}' if body is None else body
                self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()

        class Server(ThreadingHTTPServer):
            # a burst of deliveries must not meet a full accept queue (5 by default):
            # the refused ones would be retried and counted as a second attempt
            request_queue_size = 256

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def telegram_bot(self, token, api="/tg"):
        with self.lock:
            self.telegram_apis.add(api.rstrip("/"))
            self.telegram_bots.setdefault(token, 0)
        return f"{api.rstrip('/')}/bot{token}"

    def telegram_answer(self, path, status, body):
        """(status, body) as the Bot API answers a method call, or None off its paths."""
        api, _, rest = path.rpartition("/bot")
        token, _, method = rest.partition("/")
        if api not in self.telegram_apis or not method:
            return None
        if token not in self.telegram_bots:
            status = 401
        if status >= 400:
            error = {"ok": False, "error_code": status,
                     "description": self.TELEGRAM_ERRORS.get(status, "Internal Server Error")}
            if status == 429:
                error["parameters"] = {"retry_after": 1}
            return status, json.dumps(error).encode()
        if method != "sendMessage":
            return status, json.dumps({"ok": True, "result": True}).encode()
        try:
            sent = json.loads(body or b"{}")
        except ValueError:
            return 400, json.dumps({"ok": False, "error_code": 400, "description":
                                    "Bad Request: can't parse JSON"}).encode()
        if not sent.get("chat_id") or not sent.get("text"):
            return 400, json.dumps({"ok": False, "error_code": 400, "description":
                                    "Bad Request: message text is empty"}).encode()
        with self.lock:
            self.telegram_bots[token] += 1
            message_id = self.telegram_bots[token]
        chat = int(sent["chat_id"]) if str(sent["chat_id"]).lstrip("-").isdigit() \
            else sent["chat_id"]
        return 200, json.dumps({"ok": True, "result": {
            "message_id": message_id, "date": int(time.time()), "text": sent["text"],
            "from": {"id": abs(hash(token)) % 10 ** 9, "is_bot": True, "first_name": "bot"},
            "chat": {"id": chat, "type": "private"}}}).encode()

    def plan(self, path, statuses):
        with self.lock:
            self.plans[path] = list(statuses)

    def delay(self, path, seconds):
        self.delays[path] = seconds

    def serve(self, path, body, content_type="application/octet-stream"):
        with self.lock:
            self.files[path] = (body, content_type)

    def to(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait_for(self, path, count=1, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.to(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.to(path)


class Channels:
    """The receivers plus the notifications service restarted to use them (and with fast
    retries, loopback webhooks and the test clock); restored to its default env on close."""

    SERVICE = "notifications"
    TELEGRAM_TOKEN = "TESTTOKEN"

    def __init__(self, stack, **extra_env):
        self.stack = stack
        self.smtp = SmtpReceiver().start()
        self.http = HttpRecorder().start()
        self.env = {
            "CRM_WEBHOOK_ALLOW_LOOPBACK": "1", "CRM_TEST_CLOCK": "1",
            "CRM_SMTP_HOST": "127.0.0.1", "CRM_SMTP_PORT": self.smtp.port,
            "CRM_SMTP_FROM": "CRM <crm@crm.test>",
            "CRM_SMS_URL": f"{self.http.base_url}/sms", "CRM_SMS_AUTH": "smsuser:smspass",
            "CRM_TELEGRAM_API": f"{self.http.base_url}/tg",
            "CRM_TELEGRAM_TOKEN": self.TELEGRAM_TOKEN,
            "CRM_NOTIFY_BACKOFF_S": "0.4", "CRM_NOTIFY_MAX_ATTEMPTS": "3",
            "CRM_NOTIFY_SEND_TIMEOUT_S": "1", "CRM_NOTIFY_POLL_S": "0.1",
            "CRM_NOTIFY_LEASE_S": "5", **extra_env}
        self.restart()

    def restart(self, replica=0, sig=None):
        import signal
        self.stack.stop_service(self.SERVICE, replica, sig=sig or signal.SIGTERM)
        self.start(replica)

    def start(self, replica=0):
        self.stack.start_service(self.SERVICE, replica, **self.env)
        self.stack.wait_service(self.SERVICE, timeout=120)

    def telegram_path(self):
        return f"/tg/bot{self.TELEGRAM_TOKEN}/sendMessage"

    def close(self):
        self.stack.stop_service(self.SERVICE, 1)
        self.stack.stop_service(self.SERVICE, 0)
        self.stack.start_service(self.SERVICE, 0)
        self.stack.wait_service(self.SERVICE, timeout=120)
        self.smtp.stop()
        self.http.stop()
