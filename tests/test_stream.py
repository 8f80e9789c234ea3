"""The live stream (gateway/stream/) through the real stack: its own process fed by
RabbitMQ, reached through its front on the stream port (the console's single origin)."""
import http.client
import json
import random
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import pytest
import requests

STREAM = "/api/v1/stream"


class SseClient:
    """One open stream read in a thread: .events is [(id, name, data)]."""

    def __init__(self, base_url, headers=None, params=None):
        self.events = []
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.connection.request("GET", STREAM + ("?" + urlencode(params) if params else ""),
                                headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
            assert self.wait_for(lambda e: e[1] == "hello"), "no hello"
        else:
            self.body = json.loads(self.response.read() or b"{}")

    def _read(self):
        event_id, name, data = None, "message", []
        try:
            while True:
                raw = self.response.fp.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.append((event_id, name, json.loads("\n".join(data))))
                    event_id, name, data = None, "message", []
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (OSError, ValueError):  # closed under it
            pass

    def wait_for(self, predicate, timeout=10, count=1):
        """The events matching `predicate` once there are `count` of them, else what came."""
        deadline = time.time() + timeout
        found = []
        while time.time() < deadline:
            found = [e for e in list(self.events) if predicate(e)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return found if count > 1 else []

    def named(self, name):
        return [e for e in list(self.events) if e[1] == name]

    def close(self):
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connection.close()


@pytest.fixture
def streams(stack):
    opened = []

    def open_stream(client=None, headers=None, params=None):
        sse = SseClient(stack.stream_url, headers if headers is not None else
                        {"Authorization": client.headers["Authorization"]}, params)
        opened.append(sse)
        return sse

    yield open_stream
    for sse in opened:
        sse.close()


@pytest.fixture(scope="module")
def pbx(api):
    created = api.post("/api-keys", json={"name": "stream tests", "scopes": ["telephony:write"]})
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["key"]}


def phone():
    return "+39347" + "".join(random.choice("0123456789") for _ in range(7))


def test_ringing_reaches_the_contacts_owner_and_not_another_agent(stack, api, make_user, pbx,
                                                                   streams):
    owner = make_user("agent", extension=str(random.randint(10000, 99999)))
    other = make_user("agent", extension=str(random.randint(10000, 99999)))
    caller = phone()
    contact = owner.post("/contacts", json={"first_name": "Ring", "last_name": "Me",
                                            "phones": [caller], "owner_id": owner.user["id"]})
    assert contact.status_code == 201, contact.text
    contact_id = contact.json()["id"]
    mine, theirs, admin = streams(owner), streams(other), streams(api)
    started = time.time()
    answer = api.post("/telephony/events", headers=pbx, json={
        "event_id": f"ring-{contact_id}", "provider": "pbx1", "call_id": f"c-{contact_id}",
        "direction": "inbound", "from": caller, "to": "+390200000000", "state": "ringing"})
    assert answer.status_code == 200, answer.text
    popped = mine.wait_for(lambda e: e[1] == "call_ringing"
                           and e[2]["data"]["contact_id"] == contact_id)
    assert popped, mine.events
    print(f"ringing reached the owner's stream in {(time.time() - started) * 1000:.0f} ms")
    envelope = popped[0][2]
    assert envelope["type"] == "call_started" and envelope["data"]["owner_id"] == owner.user["id"]
    assert mine.wait_for(lambda e: e[1] == "call_started")
    assert admin.wait_for(lambda e: e[1] == "call_ringing"
                          and e[2]["data"]["contact_id"] == contact_id)
    # the other agent's stream is alive and got nothing of this call or contact
    time.sleep(1.0)
    assert not [e for e in theirs.events if e[1] != "hello"], theirs.events
    # the owner's own contact events reached them too (created before the stream opened:
    # not replayed); a new change does
    owner.patch(f"/contacts/{contact_id}", json={"position": "CEO"})
    assert mine.wait_for(lambda e: e[1] == "contact_updated"
                         and e[2]["data"]["contact"]["id"] == contact_id)
    time.sleep(0.5)
    assert not [e for e in theirs.events if e[1] != "hello"], theirs.events


def test_a_ticket_opens_one_stream_once(stack, make_user, streams):
    agent = make_user("agent")
    # through the stream port's front (the console's origin): the gateway issues it
    front = requests.post(stack.stream_url + "/api/v1/stream/tickets",
                          headers={"Authorization": agent.headers["Authorization"]}, timeout=10)
    assert front.status_code == 201, front.text
    ticket = front.json()["ticket"]
    assert front.json()["expires_in"] == 60 and front.json()["url"].endswith(ticket)
    sse = streams(headers={}, params={"ticket": ticket})
    assert sse.status == 200 and sse.named("hello")[0][2]["user_id"] == agent.user["id"]
    again = streams(headers={}, params={"ticket": ticket})
    assert again.status == 401
    assert again.body["error"]["details"]["reason"] == "invalid_ticket"
    # no ticket, no token, a bad token, an API key: refused
    assert streams(headers={}).status == 401
    assert streams(headers={"Authorization": "Bearer nope"}).status == 401
    assert streams(headers={}, params={"ticket": "st_forged"}).status == 401
    # tickets are not for API keys
    assert requests.post(stack.base_url + "/api/v1/stream/tickets", timeout=10).status_code == 401


def test_last_event_id_replays_what_was_missed_else_resync(stack, make_user, streams):
    agent = make_user("agent")
    sse = streams(agent)
    first = agent.post("/contacts", json={"first_name": "First", "owner_id": agent.user["id"]})
    assert first.status_code == 201
    got = sse.wait_for(lambda e: e[1] == "contact_created"
                       and e[2]["data"]["contact"]["id"] == first.json()["id"])
    assert got
    last_id = got[0][0]
    sse.close()
    admin_stream = streams(stack.sign_in())  # proves the events went through the process
    missed = [agent.post("/contacts", json={"first_name": f"Missed{i}",
                                            "owner_id": agent.user["id"]}).json()["id"]
              for i in range(2)]
    for contact_id in missed:
        assert admin_stream.wait_for(lambda e, c=contact_id: e[1] == "contact_created"
                                     and e[2]["data"]["contact"]["id"] == c)
    again = streams(agent, headers={"Authorization": agent.headers["Authorization"],
                                    "Last-Event-ID": last_id})
    # the replay comes event by event: wait for both (a loaded machine once gave one first)
    replayed = again.wait_for(lambda e: e[1] == "contact_created", timeout=10, count=len(missed))
    assert [e[2]["data"]["contact"]["id"] for e in replayed] == missed
    assert not again.named("resync")
    # an id this process never gave: resync
    lost = streams(agent, headers={"Authorization": agent.headers["Authorization"],
                                   "Last-Event-ID": "feedbeef-12"})
    assert lost.wait_for(lambda e: e[1] == "resync", timeout=3)


def test_a_notification_arrives_live(stack, api, make_user, streams):
    agent = make_user("agent")
    sse = streams(agent)
    created = api.post("/tasks", json={"title": "Call the client back",
                                       "assignee_id": agent.user["id"]})
    assert created.status_code == 201, created.text
    got = sse.wait_for(lambda e: e[1] == "notification", timeout=15)
    assert got, sse.events
    note = got[0][2]["data"]["notification"]
    assert note["user_id"] == agent.user["id"] and note["type"] == "task_assigned"
    inbox = agent.get("/notifications").json()["items"]
    assert note["id"] in [n["id"] for n in inbox]
    # the task itself, assigned to them, arrived too
    assert sse.wait_for(lambda e: e[1] == "task_created"
                        and e[2]["data"]["task"]["id"] == created.json()["id"])


def test_a_closed_stream_is_let_go_at_once(stack, make_user, streams):
    # eventlet sees a closed connection only when a write fails (a heartbeat, 15 s here, or
    # two): the stream process watches the connection and lets the stream go at EOF
    def held():
        return requests.get(stack.stream_url + STREAM + "/readyz", timeout=10).json()["streams"]

    agent = make_user("agent")
    sse = streams(agent)
    opened = held()
    sse.close()
    deadline = time.time() + 10
    while held() >= opened and time.time() < deadline:
        time.sleep(0.1)
    assert held() < opened
    # a stream of the same user opened after it works as before
    again = streams(agent)
    contact = agent.post("/contacts", json={"first_name": "After", "owner_id": agent.user["id"]})
    assert contact.status_code == 201, contact.text
    assert again.wait_for(lambda e: e[1] == "contact_created"
                          and e[2]["data"]["contact"]["id"] == contact.json()["id"])
