"""The gateway side: events wait here, in order, until the gateway has taken them.

The oldest `buffer_max` events are held in memory; newer ones are appended to the spool
file (JSON lines) and read back as memory frees up; on stop, what is in memory is written
back to the spool's front, and a new process starts from the spool. An event leaves only
once the gateway answered 2xx (or refused it for good: 4xx other than 401/403/408/429);
a timeout or 5xx posts it again, and the ingest recognises the repeat by its event id."""
import collections
import json
import logging
import os
import threading
import time

import requests

log = logging.getLogger("connectors.asterisk")
INGEST_PATH = "/api/v1/telephony/asterisk"
RETRIED = (401, 403, 408, 429)  # a key not yet valid, rate limits: not the event's fault
BACKOFF_START_S = 0.1


class Forwarder:
    def __init__(self, gateway_url, api_key, spool_path, buffer_max=10000,
                 backoff_max_s=30.0, timeout_s=5.0, session=None):
        self.url = gateway_url.rstrip("/") + INGEST_PATH
        self.headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        self.spool_path, self.buffer_max = spool_path, max(1, buffer_max)
        self.backoff_max_s, self.timeout_s = backoff_max_s, timeout_s
        self.session = session or requests.Session()
        os.makedirs(os.path.dirname(os.path.abspath(spool_path)), exist_ok=True)
        self.memory = collections.deque()
        self.lock = threading.Condition()
        self.spooled = self._spool_count()
        self.stopping = False
        self.posted = self.dropped = self.retries = 0
        self._fill_from_spool()

    # the producer side (the AMI reader)
    def put(self, event):
        with self.lock:
            if self.spooled or len(self.memory) >= self.buffer_max:
                with open(self.spool_path, "a", encoding="utf-8") as spool:
                    spool.write(json.dumps(event) + "\n")
                self.spooled += 1
            else:
                self.memory.append(event)
            self.lock.notify()

    def pending(self):
        with self.lock:
            return len(self.memory) + self.spooled

    # the spool file
    def _spool_lines(self):
        try:
            with open(self.spool_path, encoding="utf-8") as spool:
                return [line for line in spool if line.strip()]
        except FileNotFoundError:
            return []

    def _spool_count(self):
        return len(self._spool_lines())

    def _write_spool(self, lines):
        if not lines:
            if os.path.exists(self.spool_path):
                os.remove(self.spool_path)
            return
        temporary = self.spool_path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as spool:
            spool.writelines(lines)
            spool.flush()
            os.fsync(spool.fileno())
        os.replace(temporary, self.spool_path)

    def _fill_from_spool(self):
        """Moves the spool's oldest events into memory, as many as fit (lock held)."""
        if not self.spooled or len(self.memory) >= self.buffer_max:
            return
        lines = self._spool_lines()
        room = self.buffer_max - len(self.memory)
        for line in lines[:room]:
            try:
                self.memory.append(json.loads(line))
            except ValueError:
                log.warning("unreadable spool line dropped: %r", line[:200])
        self._write_spool(lines[room:])
        self.spooled = len(lines[room:])

    def save(self):
        """Writes what is in memory back to the spool's front (on stop)."""
        with self.lock:
            if not self.memory:
                return
            lines = [json.dumps(event) + "\n" for event in self.memory]
            self._write_spool(lines + self._spool_lines())
            self.spooled += len(self.memory)
            self.memory.clear()

    # the consumer side (the posting thread)
    def _post(self, event):
        """True once the event has left (taken, or refused for good)."""
        try:
            answer = self.session.post(self.url, data=json.dumps(event), headers=self.headers,
                                       timeout=self.timeout_s)
        except requests.RequestException as exc:
            log.warning("gateway unreachable (%s): %d events wait", exc.__class__.__name__,
                        self.pending())
            return False
        if answer.status_code < 300:
            self.posted += 1
            return True
        if 400 <= answer.status_code < 500 and answer.status_code not in RETRIED:
            self.dropped += 1
            log.error("gateway refused %s event %s: %s %s", event.get("Event"),
                      event.get("Uniqueid"), answer.status_code, answer.text[:300])
            return True
        log.warning("gateway answered %s: the event is posted again", answer.status_code)
        return False

    def run(self):
        backoff = BACKOFF_START_S
        while True:
            with self.lock:
                self._fill_from_spool()
                while not self.memory and not self.stopping:
                    self.lock.wait(1.0)
                    self._fill_from_spool()
                if self.stopping:
                    return
                event = self.memory[0]
            if self._post(event):
                backoff = BACKOFF_START_S
                with self.lock:
                    if self.memory and self.memory[0] is event:
                        self.memory.popleft()
                continue
            self.retries += 1
            with self.lock:
                self.lock.wait(backoff)
                if self.stopping:
                    return
            backoff = min(backoff * 2, self.backoff_max_s)

    def stop(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
