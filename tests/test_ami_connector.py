"""The Asterisk AMI connector (connectors/asterisk) as a process, between tests/ami_server.py
playing Asterisk and the real stack: a call from Newchannel to Hangup becomes one call record;
the AMI connection dropped mid-call, the gateway unreachable (live, and across a restart
through the spool file), and a post answered by a timeout all end with one record, nothing
lost or doubled. Click-to-call goes over the connector's own AMI login; AMI settings changed
through the settings API reach the running connector."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from connectors.asterisk.forwarder import Forwarder
from contracts.telephony_webhooks import connector_signature
from tests.ami_server import AmiServer
from tests.stack import ROOT, free_port
from tests.test_telephony import add_user

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "telephony", "asterisk.json")
# AMI events the ingest does not need: the connector leaves them out
NOISE = [{"Event": "Newstate", "Privilege": "call,all", "ChannelState": "4", "Uniqueid": "x.1",
          "Linkedid": "x.1"},
         {"Event": "VarSet", "Privilege": "dialplan,all", "Variable": "A", "Value": "1"}]


def mobile():
    return "+39347" + "".join(random.choice("0123456789") for _ in range(7))


def call_events(scenario="inbound_answered"):
    caller, call = mobile(), f"17{random.randint(10**8, 10**9)}"
    values = {"call": call, "caller": caller, "did": "+390212345678",
              "ext1": str(random.randint(10000, 99999)), "ext2": str(random.randint(10000, 99999)),
              "ext3": str(random.randint(10000, 99999))}
    text = json.dumps(json.load(open(FIXTURE))[scenario])
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return caller, json.loads(text)


def calls_of(api, caller):
    response = api.get("/calls", params={"phone": caller})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_for(predicate, timeout=15, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    return predicate()


def ended(api, caller, talk_s=None):
    """The caller's calls once all ended (and the CDR's talk time is in, when given)."""
    items = calls_of(api, caller)
    done = items and all(c["state"] == "ended" for c in items)
    if talk_s is not None:
        done = done and any(c.get("talk_s") == talk_s for c in items)
    return items if done else None


class FlakyProxy:
    """A TCP port in front of the gateway that can be cut: while down it takes connections
    and closes them at once."""

    def __init__(self, target_port):
        self.target, self.up = target_port, False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.refused, self.sent_at = 0, []  # when request bytes went to the gateway
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                self.refused += 1
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b, mark in ((conn, upstream, True), (upstream, conn, False)):
                threading.Thread(target=self._pipe, args=(a, b, mark), daemon=True).start()

    def _pipe(self, a, b, mark):
        try:
            while data := a.recv(65536):
                if mark:
                    self.sent_at.append(time.perf_counter())
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def ami():
    server = AmiServer()
    yield server
    server.close()


@pytest.fixture
def api_key(make_api_key):
    return make_api_key(["telephony:write", "telephony-connector:read"]).key["key"]


@pytest.fixture
def connector(stack, api_key, tmp_path):
    """connector(ami, gateway_url=None, **env) -> the running connector process."""
    started = []

    def start(ami, gateway_url=None, **env):
        environment = stack.env(
            TELEPHONY_AMI_HOST="127.0.0.1", TELEPHONY_AMI_PORT=ami.port,
            TELEPHONY_AMI_USERNAME=ami.username, TELEPHONY_AMI_SECRET=ami.secret,
            TELEPHONY_AMI_TIMEOUT_S=2, CRM_GATEWAY_URL=gateway_url or stack.base_url,
            CRM_AMI_CONNECTOR_API_KEY=api_key, CRM_AMI_CONNECTOR_BACKOFF_MAX_S=0.4,
            CRM_AMI_CONNECTOR_POST_TIMEOUT_S=3, CRM_AMI_CONNECTOR_SETTINGS_POLL_S=0.3,
            CRM_AMI_CONNECTOR_SPOOL=str(tmp_path / "ami.spool"),
            CRM_HEARTBEAT_FILE=str(tmp_path / "ami.heartbeat"), **env)
        log = open(stack.log_path(f"ami-connector-{len(started)}"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "connectors.asterisk"], cwd=ROOT,
                                env=environment, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        logins = ami.logins
        assert wait_for(lambda: ami.logins > logins or proc.poll() is not None, 15)
        assert proc.poll() is None, open(log.name).read()[-2000:]
        return proc

    start.spool = tmp_path / "ami.spool"
    start.heartbeat = tmp_path / "ami.heartbeat"
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_a_call_from_newchannel_to_hangup_is_one_record(api, ami, connector):
    connector(ami)
    caller, events = call_events()
    ami.emit(NOISE[:1] + events[:3] + NOISE[1:] + events[3:])
    items = wait_for(lambda: ended(api, caller, 115))
    assert items and len(items) == 1, calls_of(api, caller)
    call = items[0]
    assert (call["provider"], call["direction"], call["outcome"]) == ("asterisk", "inbound", "answered")
    assert call["call_id"] == events[0]["Linkedid"] and call["talk_s"] == 115
    login = dict(line.split(": ", 1) for line in ami.received[0])
    assert login["Action"] == "Login" and login["ActionID"] and login["Events"] == "call,cdr"
    assert ami.errors == []
    # the container probe: alive, and ready while logged in to AMI
    probe = subprocess.run([sys.executable, "-m", "crm_common.healthcheck", "ami-connector", "--ready"],
                           cwd=ROOT, capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, CRM_HEARTBEAT_FILE=str(connector.heartbeat)))
    assert probe.returncode == 0, probe.stdout


def test_the_ami_connection_drops_mid_call_and_nothing_is_lost_or_doubled(api, ami, connector):
    connector(ami)
    caller, events = call_events("queue_missed")
    ami.emit(events[:4])
    assert wait_for(lambda: calls_of(api, caller))
    ami.drop()  # Asterisk restarts: the rest of the call comes on the next connection
    ami.emit(events[4:])
    assert wait_for(lambda: ami.logins >= 2)
    items = wait_for(lambda: ended(api, caller))
    assert items and len(items) == 1, calls_of(api, caller)
    call = items[0]
    assert call["outcome"] != "answered" and call["missed"] is True, call
    assert len(call["legs"]) == 3, call["legs"]
    assert ami.errors == []


def test_events_wait_while_the_gateway_is_unreachable(api, ami, connector, stack):
    proxy = FlakyProxy(stack.gateway_port)
    try:
        proc = connector(ami, gateway_url=f"http://127.0.0.1:{proxy.port}")
        caller, events = call_events()
        ami.emit(events)
        assert wait_for(lambda: proxy.refused >= 2)
        time.sleep(0.3)
        assert calls_of(api, caller) == []  # nothing got through
        proxy.up = True
        items = wait_for(lambda: ended(api, caller, 115))
        assert items and len(items) == 1 and items[0]["outcome"] == "answered", calls_of(api, caller)
        stop(proc)
    finally:
        proxy.close()


def test_events_kept_in_the_spool_survive_a_restart(api, ami, connector, stack):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = connector(ami, gateway_url=closed, CRM_AMI_CONNECTOR_BUFFER=2)
    caller, events = call_events()
    ami.emit(events)
    # two in memory, the rest in the spool file; on stop the memory joins the spool
    assert wait_for(lambda: connector.spool.exists() and
                    len(connector.spool.read_text().splitlines()) == len(events) - 2)
    stop(proc)
    spooled = [json.loads(line) for line in connector.spool.read_text().splitlines()]
    assert spooled == events
    connector(ami, CRM_AMI_CONNECTOR_BUFFER=2)
    items = wait_for(lambda: ended(api, caller, 115))
    assert items and len(items) == 1 and items[0]["outcome"] == "answered", calls_of(api, caller)
    assert wait_for(lambda: not connector.spool.exists())


class TimesOutAfterPosting(requests.Session):
    """The gateway takes the first post of each event but the answer never arrives."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def post(self, url, **kwargs):
        answer = super().post(url, **kwargs)
        if kwargs["data"] not in self.seen:
            self.seen.add(kwargs["data"])
            raise requests.ReadTimeout("no answer in time")
        return answer


def test_a_post_repeated_after_a_timeout_is_one_event(api, api_key, stack, tmp_path):
    session = TimesOutAfterPosting()
    forwarder = Forwarder(stack.base_url, api_key, str(tmp_path / "spool"), backoff_max_s=0.05,
                          session=session)
    caller, events = call_events()
    for event in events:
        forwarder.put(event)
    thread = threading.Thread(target=forwarder.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: forwarder.pending() == 0)
    finally:
        forwarder.stop()
    assert forwarder.posted == len(events) and forwarder.retries == len(events)
    items = ended(api, caller)
    assert items and len(items) == 1, calls_of(api, caller)
    call = items[0]
    assert call["outcome"] == "answered" and call["talk_s"] == 115 and len(call["legs"]) == 1


def test_added_latency(api, ami, connector, stack):
    """From the AMI server writing an event to the connector's POST reaching the gateway's
    port (printed; a generous bound: the target is 10 ms)."""
    proxy = FlakyProxy(stack.gateway_port)
    proxy.up = True
    try:
        connector(ami, gateway_url=f"http://127.0.0.1:{proxy.port}")
        added = []
        for _ in range(20):
            caller, events = call_events()
            count = len(proxy.sent_at)
            started = time.perf_counter()
            ami.emit(events[:1])
            assert wait_for(lambda: len(proxy.sent_at) > count, step=0.0005)
            added.append(proxy.sent_at[count] - started)
            assert wait_for(lambda: calls_of(api, caller))
        added.sort()
        print(f"\nAMI connector: AMI event -> POST at the gateway: median "
              f"{added[10] * 1000:.1f} ms, max {added[-1] * 1000:.1f} ms")
        assert added[10] < 0.1
    finally:
        proxy.close()


@pytest.fixture
def settings_patch(api):
    """settings_patch(**values): PATCH /settings/telephony, undone (nulls) after the test."""
    changed = set()

    def patch(**values):
        response = api.patch("/settings/telephony", json=values)
        assert response.status_code == 200, response.text
        changed.update(values)
        return response.json()

    yield patch
    if changed:
        api.patch("/settings/telephony", json={name: None for name in changed})
        time.sleep(2.5)  # every telephony replica's settings cache


def test_click_to_call_goes_over_the_connectors_ami_login(api, stack, ami, connector,
                                                         settings_patch):
    listen = free_port()
    connector(ami, CRM_AMI_CONNECTOR_LISTEN=f"127.0.0.1:{listen}")
    url = f"http://127.0.0.1:{listen}/originate"
    # a request not signed with the shared key dials nothing
    body = json.dumps({"call_id": "x", "at": time.time(), "fields": []}).encode()
    assert requests.post(url, data=body, headers={
        "X-CRM-Signature": connector_signature(body, "wrong")}).status_code == 401
    settings_patch(originate="connector", originate_url=url, originate_secret="click-secret")
    time.sleep(2.5)  # the settings caches (telephony 2 s; the connector polls every 0.3 s)
    agent, to = add_user(stack), "+39347" + str(random.randint(10**6, 10**7 - 1))
    received = len(ami.received)
    response = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
    assert response.status_code == 201, response.text
    call = response.json()
    assert call["originate"]["adapter"] == "connector" and call["originate"]["status"] == "queued"
    done = wait_for(lambda: api.get(f"/calls/{call['id']}").json()["originate"]["status"]
                    == "answered")
    assert done, api.get(f"/calls/{call['id']}").json()
    assert api.get(f"/calls/{call['id']}").json()["originate"]["pbx_call_id"] == "1700000000.42"
    # one AMI login, the connector's: the Originate travelled on it
    assert ami.logins == 1 and ami.actions()[0] == "Login"
    originate = ami.received[received]
    assert originate[0] == "Action: Originate" and originate[1].startswith("ActionID: crm-")
    assert originate[2:5] == [f"Channel: PJSIP/{agent['extension']}", "Context: from-internal",
                              f"Exten: {to}"]
    assert f"Variable: CRM_CALL_ID={call['id']}" in originate and "Async: true" in originate
    assert ami.errors == []
    # the same request again (a retried POST) dials nothing more
    originates = ami.actions().count("Originate")
    body = json.dumps({"call_id": call["id"], "at": time.time(),
                       "fields": [["Channel", "PJSIP/1"]]}).encode()
    again = requests.post(url, data=body, headers={
        "X-CRM-Signature": connector_signature(body, "click-secret")})
    assert again.status_code == 200 and again.json()["status"] == "queued"
    assert ami.actions().count("Originate") == originates


def test_ami_settings_changed_through_the_api_reach_the_running_connector(
        api, ami, connector, settings_patch, make_api_key):
    # the AMI secret goes only to a key given the connector's scope
    events_only = make_api_key(["telephony:write"])
    assert events_only.get("/telephony/connector-settings").status_code == 403
    connector(ami)
    other = AmiServer(secret="another-secret")
    try:
        settings_patch(ami_port=other.port, ami_secret="another-secret")
        assert wait_for(lambda: other.logins >= 1), "the connector did not log in to the new PBX"
        caller, events = call_events()
        other.emit(events)
        items = wait_for(lambda: ended(api, caller, 115))
        assert items and len(items) == 1, calls_of(api, caller)
        assert other.errors == []
    finally:
        other.close()
