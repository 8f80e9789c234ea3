"""Outgoing webhooks end to end (signed, retried, failed, redelivered, validated) and the
exactly-once guarantee under duplicated events, a restart and two replicas."""
import hashlib
import hmac
import json
import signal
import time

from tests.test_notifications import (ch, deliveries, later_event_handled,  # noqa: F401
                                      make_user, new_id, publish, sender_caught_up, task,
                                      wait, wait_final)


def subscribe(api, ch, events, **fields):
    path = f"/hook-{new_id()}"
    response = api.post("/webhooks", json={"url": ch.http.base_url + path, "events": events,
                                           **fields})
    assert response.status_code == 201, response.text
    return response.json(), path


def verify(secret, request, tolerance_s=300):
    """docs/webhooks.md: X-CRM-Signature t=<unix>,v1=<HMAC of "<t>.<body>">, t within 5 min."""
    fields = dict(p.split("=", 1) for p in request["headers"]["X-CRM-Signature"].split(","))
    if abs(time.time() - int(fields["t"])) > tolerance_s:
        return False
    signed = fields["t"].encode() + b"." + request["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    legacy = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return (hmac.compare_digest(expected, fields["v1"])
            and hmac.compare_digest(legacy, request["headers"]["X-CRM-Signature-256"]))


def deal_won(stack, owner_id=None, **data):
    return publish(stack, "deals", "deal_won", {"deal": {"id": f"d{new_id()}", "title": "W"},
                                                "owner_id": owner_id, "amount": 500,
                                                "currency": "EUR", **data})


def test_webhook_body_is_signed_and_verifiable_secret_shown_once(api, stack, ch):
    hook, path = subscribe(api, ch, ["deal_won", "task_created"], secret="s3cr3t-" + "x" * 20,
                           description="ERP")
    assert hook["secret"] == "s3cr3t-" + "x" * 20 and hook["active"] is True
    body = deal_won(stack, contact_id="c9")
    [request] = ch.http.wait_for(path)
    assert verify(hook["secret"], request)
    assert not verify("wrong-secret-wrong-secret", request)
    sent = json.loads(request["body"])
    assert sent == {"event_id": body["event_id"], "type": "deal_won",
                    "occurred_at": body["occurred_at"], "data": body["data"]}
    assert request["headers"]["X-CRM-Event"] == "deal_won"
    # the secret never comes back
    assert "secret" not in api.get(f"/webhooks/{hook['id']}").json()
    listed = api.get("/webhooks").json()["items"]
    assert hook["id"] in [h["id"] for h in listed] and all("secret" not in h for h in listed)
    generated, _ = subscribe(api, ch, ["deal_lost"])
    assert len(generated["secret"]) >= 32
    # not subscribed: nothing (the event's deliveries are written together: to the hook
    # that subscribed it only)
    lost = publish(stack, "deals", "deal_lost", {"deal": {"id": f"d{new_id()}"}, "owner_id": None})
    sent = wait_final(stack, lost["event_id"], 1)
    assert generated["id"] in [d.get("webhook_id") for d in sent]
    assert hook["id"] not in [d.get("webhook_id") for d in sent]
    assert len(ch.http.to(path)) == 1
    for h in (hook, generated):
        assert api.delete(f"/webhooks/{h['id']}").status_code == 200
    assert api.get(f"/webhooks/{hook['id']}").status_code == 404


def test_webhook_retries_with_backoff_then_succeeds(api, stack, ch):
    hook, path = subscribe(api, ch, ["deal_won"])
    ch.http.plan(path, [500, 502])
    body = deal_won(stack)
    requests = ch.http.wait_for(path, 3)
    assert len(requests) == 3
    assert len({r["body"] for r in requests}) == 1  # the same signed body every time
    assert all(verify(hook["secret"], r) for r in requests)
    gaps = [b["at"] - a["at"] for a, b in zip(requests, requests[1:])]
    assert gaps[0] >= 0.35 and gaps[1] >= 0.75  # 0.4 s then 0.8 s (exponential)
    [delivery] = wait_final(stack, body["event_id"], 1)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    listed = api.get(f"/webhooks/{hook['id']}/deliveries").json()["items"]
    assert [d["status"] for d in listed if d["event_id"] == body["event_id"]] == ["delivered"]
    api.delete(f"/webhooks/{hook['id']}")


def test_webhook_retries_then_failed_visible_and_redeliverable(api, stack, ch, unique):
    hook, path = subscribe(api, ch, ["deal_won"])
    ch.http.plan(path, [500, 500, 500])
    body = deal_won(stack)
    [delivery] = wait_final(stack, body["event_id"], 1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert len(ch.http.to(path)) == 3
    sender_caught_up(stack, unique)
    assert len(ch.http.to(path)) == 3  # nothing requeued forever
    failed = api.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "failed"}).json()
    [shown] = [d for d in failed["items"] if d["event_id"] == body["event_id"]]
    assert "500" in shown["last_error"] and shown["failed_at"].endswith("Z")
    again = api.post(f"/webhooks/{hook['id']}/deliveries/{shown['id']}/redeliver")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "pending" and again.json()["redeliveries"] == 1
    assert len(ch.http.wait_for(path, 4)) == 4
    done = wait(lambda: api.get(f"/webhooks/{hook['id']}/deliveries",
                                params={"status": "delivered"}).json()["items"])
    assert done[0]["id"] == shown["id"] and done[0]["attempts"] == 1
    assert api.post(f"/webhooks/{hook['id']}/deliveries/nope/redeliver").status_code == 404
    api.delete(f"/webhooks/{hook['id']}")


def test_webhook_4xx_fails_at_once_and_a_timeout_is_retried(api, stack, ch):
    gone, gone_path = subscribe(api, ch, ["deal_won"])
    slow, slow_path = subscribe(api, ch, ["deal_won"])
    ch.http.plan(gone_path, [410])
    ch.http.delay(slow_path, 2)  # longer than the 1 s send timeout: every attempt times out
    body = deal_won(stack)
    found = {d["webhook_id"]: d for d in wait_final(stack, body["event_id"], 2, timeout=30)}
    assert found[gone["id"]]["status"] == "failed" and found[gone["id"]]["attempts"] == 1
    assert "410" in found[gone["id"]]["last_error"]
    assert found[slow["id"]]["status"] == "failed" and found[slow["id"]]["attempts"] == 3
    assert "timed out" in found[slow["id"]]["last_error"]
    ch.http.delay(slow_path, 0)
    for h in (gone, slow):
        api.delete(f"/webhooks/{h['id']}")


def test_bad_webhooks_are_422_and_store_nothing(api, stack, ch):
    hooks = stack.db("notifications")["webhooks"]
    before = hooks.count_documents({})
    good = {"url": ch.http.base_url + "/x", "events": ["deal_won"]}
    for bad in ({**good, "url": "ftp://example.com/x"}, {**good, "url": "file:///etc/passwd"},
                {**good, "url": "not a url"}, {**good, "url": "http://10.1.2.3/hook"},
                {**good, "url": "http://169.254.169.254/latest/meta-data"},
                {**good, "url": "http://192.168.1.10/"}, {**good, "url": "http://[fd00::1]/"},
                {**good, "url": "http://user:pw@example.com/"},
                {**good, "events": ["no_such_event"]}, {**good, "events": []},
                {"url": good["url"]}, {**good, "secret": "short"}):
        response = api.post("/webhooks", json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert hooks.count_documents({}) == before
    hook, _ = subscribe(api, ch, ["deal_won"])
    patched = api.patch(f"/webhooks/{hook['id']}", json={"url": "http://10.0.0.1/"})
    assert patched.status_code == 422
    assert api.patch(f"/webhooks/{hook['id']}", json={"secret": "x" * 20}).status_code == 422
    assert api.get(f"/webhooks/{hook['id']}").json()["url"] == hook["url"]
    api.delete(f"/webhooks/{hook['id']}")


def test_loopback_is_refused_unless_allowed(stack):
    from crm_common.config import load_settings
    from services.notifications.urls import UnsafeUrl, check_url
    import os
    saved = os.environ.pop("CRM_WEBHOOK_ALLOW_LOOPBACK", None)
    try:
        settings = load_settings().notifications
        for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/x"):
            try:
                check_url(url, settings)
                raise AssertionError(url)
            except UnsafeUrl:
                pass
        os.environ["CRM_WEBHOOK_ALLOW_LOOPBACK"] = "1"
        assert check_url("http://127.0.0.1:9/x", load_settings().notifications)
    finally:
        os.environ.pop("CRM_WEBHOOK_ALLOW_LOOPBACK", None)
        if saved is not None:
            os.environ["CRM_WEBHOOK_ALLOW_LOOPBACK"] = saved


# --- exactly once -----------------------------------------------------------------------

def test_duplicated_events_deliver_once_per_recipient_and_channel(api, stack, ch, unique):
    hook, path = subscribe(api, ch, ["task_assigned"])
    user = make_user(stack, unique)
    event_id = f"dup-{new_id()}"
    data = {"task": task(), "assignee_id": user["id"]}
    for _ in range(3):
        publish(stack, "tasks", "task_assigned", data, event_id=event_id)
    found = wait_final(stack, event_id, 2)
    assert sorted(d["channel"] for d in found) == ["email", "webhook"]
    later_event_handled(stack, unique)  # so were the repeats before it
    assert len([r for r in ch.http.to(path) if json.loads(r["body"])["event_id"] == event_id]) == 1
    assert len(ch.smtp.to(user["email"])) == 1
    notes = api.get("/notifications", params={"user_id": user["id"]}).json()["items"]
    assert [n["event_id"] for n in notes] == [event_id]
    api.delete(f"/webhooks/{hook['id']}")


def test_exactly_once_across_a_restart_and_two_replicas(api, stack, ch, unique):
    hook, path = subscribe(api, ch, ["task_assigned"])
    user = make_user(stack, unique)
    ch.start(replica=1)  # a second replica races the first for every delivery
    try:
        ids = [f"burst-{unique}-{i}" for i in range(60)]
        for i, event_id in enumerate(ids):
            publish(stack, "tasks", "task_assigned", {"task": task(f"T{i}"),
                                                      "assignee_id": user["id"]},
                    event_id=event_id)
            if i == 20:
                ch.restart(replica=0)  # stopped mid-burst, started again
        for event_id in ids[:30]:  # and half of them arrive twice
            publish(stack, "tasks", "task_assigned", {"task": task(), "assignee_id": user["id"]},
                    event_id=event_id)
        deliveries_coll = stack.db("notifications")["deliveries"]
        done = wait(lambda: deliveries_coll.count_documents(
            {"event_id": {"$in": ids}, "status": "delivered"}) == 120, timeout=60)
        assert done, deliveries_coll.count_documents({"event_id": {"$in": ids}})
    finally:
        stack.stop_service("notifications", 1)
    later_event_handled(stack, unique)  # so were the repeats before it
    received = [json.loads(r["body"])["event_id"] for r in ch.http.to(path)]
    assert sorted(received) == sorted(ids)  # every event once, none twice
    mails = ch.smtp.to(user["email"])
    assert len(mails) == 60 and len({m["message"]["X-CRM-Delivery"] for m in mails}) == 60
    inbox = stack.db("notifications")["inbox"]
    assert inbox.count_documents({"user_id": user["id"]}) == 60
    api.delete(f"/webhooks/{hook['id']}")


def test_a_crash_mid_burst_loses_nothing_and_repeats_are_recognisable(api, stack, ch, unique):
    hook, path = subscribe(api, ch, ["task_assigned"])
    user = make_user(stack, unique)
    ids = [f"crash-{unique}-{i}" for i in range(40)]
    for i, event_id in enumerate(ids):
        publish(stack, "tasks", "task_assigned", {"task": task(f"T{i}"), "assignee_id": user["id"]},
                event_id=event_id)
        if i == 15:
            ch.restart(replica=0, sig=signal.SIGKILL)  # killed, not stopped
    deliveries_coll = stack.db("notifications")["deliveries"]
    done = wait(lambda: deliveries_coll.count_documents(
        {"event_id": {"$in": ids}, "status": "delivered"}) == 80, timeout=60)
    assert done, deliveries_coll.count_documents({"event_id": {"$in": ids}})
    later_event_handled(stack, unique)  # so were the repeats before it
    requests = [r for r in ch.http.to(path)]
    assert {json.loads(r["body"])["event_id"] for r in requests} == set(ids)  # nothing lost
    # a send interrupted by the kill may be repeated after its lease: with the same
    # X-CRM-Delivery id, so the receiver can drop it
    by_event = {}
    for r in requests:
        by_event.setdefault(json.loads(r["body"])["event_id"], set()).add(r["headers"]["X-CRM-Delivery"])
    assert all(len(delivery_ids) == 1 for delivery_ids in by_event.values())
    inbox = stack.db("notifications")["inbox"]
    assert inbox.count_documents({"user_id": user["id"]}) == 40
    api.delete(f"/webhooks/{hook['id']}")


def test_a_webhook_only_type_is_routed_here_once_a_webhook_subscribes(api, stack, ch):
    """call_started reaches no person: notifications' telephony queue is bound to it only
    once an active webhook subscribes (before the subscription's answer)."""
    def started():
        call_id = f"c{new_id()}"
        return publish(stack, "telephony", "call_started", {
            "call": {"id": call_id, "call_id": call_id, "direction": "inbound"},
            "direction": "inbound", "owner_id": None, "agent_id": None, "contact_id": None})

    hook, path = subscribe(api, ch, ["call_started"])
    body = started()
    [request] = ch.http.wait_for(path)
    assert json.loads(request["body"])["event_id"] == body["event_id"]
    api.delete(f"/webhooks/{hook['id']}")


def test_demand_bound_queue_gets_a_type_only_once_named():
    """The queue is declared with the always-bound types; DemandBindings.ensure binds a
    named one (on the real broker: a message of that type is routed to the queue)."""
    from unittest import mock

    from kombu import Connection, Exchange, Producer
    from nameko import constants
    from nameko.containers import ServiceContainer

    from crm_common.messaging import events as crm_events
    from crm_common.messaging.bindings import (DemandBindings, DemandBoundHandler,
                                               demand_bound_handler)

    amqp_uri = "amqp://guest:guest@localhost:5672/"
    source = f"demand{new_id()}"

    class Listener:
        name = f"listener{new_id()}"
        bindings = DemandBindings(lambda store: [])

        @demand_bound_handler(source, {"wanted", "named_later"}, {"wanted"})
        def on_events(self, event):
            pass

    container = ServiceContainer(Listener, {constants.AMQP_URI_CONFIG_KEY: amqp_uri})
    handler = next(e for e in container.entrypoints if isinstance(e, DemandBoundHandler))
    bindings = next(d for d in container.dependencies if isinstance(d, DemandBindings))
    with mock.patch.object(crm_events, "declare_dead_letter_queue"):
        handler.setup()
    bindings.setup()
    assert {b.routing_key for b in handler.queue.bindings} == {"wanted"}
    exchange = Exchange(f"{source}.events", type="topic", durable=True)
    with Connection(amqp_uri) as conn:
        channel = conn.channel()
        queue = handler.queue.bind(channel)
        queue.declare()
        try:
            producer = Producer(channel, exchange=exchange, serializer="json")

            def routed(kind):
                queue.purge()
                producer.publish({"n": 1}, routing_key=kind)
                return wait(lambda: queue.queue_declare(passive=True).message_count == 1,
                            timeout=2)

            assert routed("wanted")
            assert not routed("named_later")
            bindings.ensure({f"{source}.named_later", "other.named_later", f"{source}.unknown"})
            assert bindings.bound == {f"{source}.named_later"}
            assert routed("named_later")
        finally:
            queue.delete()
            exchange.bind(channel).delete()
