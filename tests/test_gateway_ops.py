"""Gateway operations: health, readiness, metrics, OpenAPI, docs, request ids, and a
bounded answer when a service or the broker is missing."""
import time
import uuid
from urllib.parse import urlparse

import amqp
import pytest

from crm_common.messaging.rpc import PublishChannel, RpcPool
from crm_common.errors import Timeout, Unavailable
from tests.faults import CuttableProxy


def test_healthz_readyz_report_each_dependency(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) == {"broker", "contacts", "deals", "tasks", "notifications", "telephony",
                           "search", "notes", "conversations", "automation", "sales"}
    assert all(c["ok"] for c in checks.values())


def test_request_id_is_returned_and_generated(api):
    given = api.get("/contacts", headers={"X-Request-Id": "req-123"})
    assert given.headers["X-Request-Id"] == "req-123"
    assert len(api.get("/contacts").headers["X-Request-Id"]) >= 16


def test_metrics_are_prometheus_text(api):
    api.get("/contacts")
    text = api.get("/metrics").text
    assert "crm_gateway_requests_total" in text
    assert 'crm_gateway_rpc_seconds_bucket{le="0.005",method="list_contacts",service="contacts"}' in text \
        or "crm_gateway_rpc_seconds" in text


def test_openapi_document_is_generated_from_the_schemas(api):
    spec = api.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ("/api/v1/contacts", "/api/v1/contacts/{contact_id}", "/api/v1/contacts/lookup",
                 "/api/v1/contacts/{contact_id}/timeline", "/api/v1/companies",
                 "/api/v1/companies/{company_id}"):
        assert path in paths, path
    post = paths["/api/v1/contacts"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ContactIn")
    assert {"201", "409", "422"} <= set(post["responses"])
    props = spec["components"]["schemas"]["ContactIn"]["properties"]
    assert {"first_name", "emails", "phones", "custom", "birthday", "do_not_contact"} <= set(props)
    list_params = {p["name"] for p in paths["/api/v1/contacts"]["get"]["parameters"]}
    assert {"q", "tag", "owner_id", "company_id", "source", "status", "not_contacted_since",
            "created_after", "created_before", "limit", "cursor", "sort", "include_total"} <= list_params


def test_openapi_links_chain_what_is_created_into_its_operations(api):
    """A stateful client follows the document's links: what a POST creates, and each item
    of a list, into the operations taking its id, and into the create bodies naming it.
    Every link names an operation and fills all of its path parameters; only operations
    nothing creates a key for have none."""
    spec = api.get("/api/v1/openapi.json").json()
    by_id = {op["operationId"]: (path, op) for path, ops in spec["paths"].items()
             for op in ops.values() if "operationId" in op}
    linked = set()
    for ops in spec["paths"].values():
        for op in ops.values():
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    path, target = by_id[link["operationId"]]
                    wanted = {f"path.{p['name']}" for p in target["parameters"] if p["in"] == "path"}
                    named = {k for k in link.get("parameters", {}) if k.startswith("path.")}
                    assert named == wanted, (path, link)
                    query = {f"query.{p['name']}" for p in target["parameters"] if p["in"] == "query"}
                    assert set(link.get("parameters", {})) - named <= query, (path, link)
                    linked.add(link["operationId"])
    unlinked = {f"{method.upper()} {path}" for path, ops in spec["paths"].items()
                for method, op in ops.items() if "{" in path and op["operationId"] not in linked}
    # an e-mail's unsubscribe token; an enum of entities (its GET links to its PUT)
    assert unlinked == {"GET /api/v1/u/{token}", "GET /api/v1/custom-fields/minimal/{entity}"}
    contacts = spec["paths"]["/api/v1/contacts"]
    created = contacts["post"]["responses"]["201"]["links"]["get_contacts_get_contact"]
    assert created["parameters"] == {"path.contact_id": "$response.body#/id"}
    listed = contacts["get"]["responses"]["200"]["links"]["delete_contacts_delete_contact"]
    assert listed["parameters"] == {"path.contact_id": "$response.body#/items/0/id"}
    # a created contact goes into the bodies naming one (merged into a generated body)
    note = contacts["post"]["responses"]["201"]["links"]["post_notes_create_note.record_id"]
    assert note["requestBody"] == {"record_id": "$response.body#/id", "record_type": "contact"}
    # ... and, whole, into the create's first example (a generated note is rarely valid)
    note = contacts["post"]["responses"]["201"]["links"]["post_notes_create_note.record_id.example"]
    assert note["requestBody"]["record_id"] == "$response.body#/id"
    assert note["requestBody"]["body"] and note["x-schemathesis"] == {"merge_body": False}
    # an upload names its record in the query; it is a valid multipart example
    upload = contacts["post"]["responses"]["201"]["links"]["post_files_upload_file.record_id"]
    assert upload["parameters"] == {"query.record_id": "$response.body#/id",
                                    "query.record_type": "contact"}
    multipart = spec["paths"]["/api/v1/files"]["post"]["requestBody"]["content"]
    assert multipart["multipart/form-data"]["examples"]["example1"]["value"]["file"]
    comment = spec["paths"]["/api/v1/notes/{note_id}/comments"]["post"]["responses"]["201"]
    assert comment["links"]["patch_notes_update_comment"]["parameters"] == {
        "path.note_id": "$request.path.note_id", "path.comment_id": "$response.body#/id"}


def test_openapi_request_examples_are_valid_creates():
    """A create's examples (contracts' OPENAPI_EXAMPLES) are in its request body, valid for
    the document's schema (a generator drops an invalid example silently) and for the
    contract the gateway validates with."""
    import importlib

    import jsonschema_rs  # schemathesis' validator

    from gateway.app import OPS_PATHS, ROUTE_MODULES
    from gateway.openapi import build_spec
    from gateway.routes import api
    for name in ROUTE_MODULES:
        importlib.import_module(f"gateway.routes.{name}")
    spec = build_spec(api, OPS_PATHS)
    checked = set()
    for route in api.routes:
        body = spec["paths"][route.path][route.method.lower()].get("requestBody", {})
        content = body.get("content", {}).get("application/json", {})
        examples = [e["value"] for e in content.get("examples", {}).values()]
        if route.partial or route.body is None:
            assert not examples, route.path
            continue
        assert len(examples) == len(getattr(route.body, "OPENAPI_EXAMPLES", ())), route.path
        validator = jsonschema_rs.Draft7Validator(
            {**content["schema"], "components": spec["components"]})
        for example in examples:
            assert not list(validator.iter_errors(example)), (route.path, example)
            route.body().load(example)
            checked.add(f"{route.method} {route.path}")
    assert {"POST /api/v1/contacts", "POST /api/v1/pipelines", "POST /api/v1/targets",
            "POST /api/v1/roles", "POST /api/v1/webhooks", "POST /api/v1/calls",
            "POST /api/v1/users"} <= checked, checked


def test_an_attachment_is_base64_in_the_document_and_the_contract():
    """Found by the fuzz job's stateful phase: a message's attachment that is not base64 was
    refused by the service (422) although the document allowed any text. The contract's
    pattern is exactly what base64.b64decode(validate=True) takes."""
    import base64
    import re

    from contracts.conversations import AttachmentIn
    pattern = AttachmentIn().fields["content_base64"].validators[1].regex.pattern
    for value, valid in (("QUJD", True), ("QUI=", True), ("QQ==", True), ("aBa1=", False),
                         ("QUJD\n", False), ("Q", False), ("\u00aa", False), ("QU JD", False)):
        errors = AttachmentIn().validate({"filename": "a.txt", "content_base64": value})
        try:  # the service's own decoding refuses a trailing line break (Python's `$` not)
            base64.b64decode(value, validate=True)
        except ValueError:
            errors = errors or {"content_base64": "refused by the service"}
        assert (not errors) == valid, value
        # the document's (ECMA) pattern: `$` is the end there
        assert bool(re.fullmatch(pattern.strip("^$"), value)) == valid, value


def test_an_attachments_type_is_one_a_mail_header_can_carry():
    """Found in the fuzz job's service logs: a message's attachment typed with a line break
    was accepted (202) and failed at each send try. The contract refuses it (422) and
    the gateway serves a received one of that kind as bytes."""
    from email.message import EmailMessage

    from contracts.conversations import AttachmentIn
    from gateway.downloads import servable_type
    for value, valid in (("application/pdf", True), ("text/plain; charset=utf-8", True),
                         ('text/plain;\tname="a b.txt"', True), ("text/plain\r\nX-Evil: 1", False),
                         ("text/plain;\r\n a=b", False), ("text/plain\n", False), ("pdf", False)):
        errors = AttachmentIn().validate({"filename": "a.txt", "content_type": value,
                                          "content_base64": "QUJD"})
        assert (not errors) == valid, value
        assert (servable_type(value) == value) == valid, value
        if valid:  # what the sender does with it
            EmailMessage().add_attachment(b"ABC", *value.split(";")[0].split("/"),
                                          filename="a.txt")


def test_a_mail_servers_host_is_one_a_connection_can_resolve():
    """Found in the fuzz job's service logs: a mailbox whose SMTP host held a control
    character was accepted, and every send through it failed in the resolver (an
    unexpected error each try). The contract refuses such a host at save (422)."""
    from contracts.conversations import ServerIn
    base = {"port": 587, "username": "u", "password": "p"}
    for host, valid in (("smtp.example.com", True), ("127.0.0.1", True), ("::1", True),
                        ("localhost", True), ("xn--80a1acny.xn--p1ai", True), ("a..b", False),
                        ("\x9email.example.com", False), ("-a.example", False),
                        ("smtp.example.com:587", False), ("mail host", False)):
        assert (not ServerIn().validate({**base, "host": host})) == valid, host
        if valid:
            host.encode("idna")  # what the resolver does first


def test_every_flask_route_is_documented(stack):
    from gateway.app import create_app
    app = create_app(rpc_pool=RpcPool(stack.amqp_uri))
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.rule != "/api/v1/openapi.json":
            path = rule.rule.replace("<", "{").replace(">", "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method) in documented, (path, method)


def test_docs_page_works_offline(api):
    page = api.get("/api/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert api.get("/api/docs/static/swagger-ui-bundle.js").status_code == 200


def test_unknown_route_and_method_use_the_error_format(api):
    missing = api.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = api.put("/contacts")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_rpc_to_a_service_that_never_existed_fails_at_once(stack):
    pool = RpcPool(stack.amqp_uri, timeout=5)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        pool.call("nosuchservice", "ping")
    assert time.monotonic() - start < 1.0
    pool.close()


def test_broker_down_gives_503_at_once():
    pool = RpcPool("amqp://guest:guest@127.0.0.1:1/", timeout=5)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        pool.call("contacts", "ping")
    assert time.monotonic() - start < 5.0


def test_stopped_service_gives_504_within_the_timeout_and_recovers(api, stack, unique):
    """With contacts stopped the gateway answers 503/504 within the RPC timeout (3 s in
    tests), /readyz says which service is missing, the request is not executed later
    (per-request TTL), and everything works again once the service is back."""
    stack.stop_service("contacts")
    try:
        start = time.monotonic()
        # a name `q` finds by prefix (a hex string of digits alone would be read as a phone)
        response = api.post("/contacts", json={"first_name": "Late", "last_name": f"Gw{unique}"})
        elapsed = time.monotonic() - start
        assert response.status_code in (503, 504), response.text
        assert response.json()["error"]["code"] in ("service_timeout", "service_unavailable")
        assert elapsed < 5, elapsed
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["contacts"]["ok"] is False
        assert ready.json()["checks"]["deals"]["ok"] is True
    finally:
        stack.start_service("contacts")
        stack.wait_service("contacts")
    # this create reaches the contacts queue after the one that timed out: once it is
    # answered, that one was dropped, or delivered before it
    back = api.post("/contacts", json={"first_name": "Back", "last_name": f"Gw{unique}"})
    assert back.status_code == 201
    found = api.get("/contacts", params={"q": f"gw{unique}"}).json()["items"]
    # the request that timed out was dropped, not executed late
    assert [c["id"] for c in found] == [back.json()["id"]]
    assert api.get("/readyz").status_code == 200


def test_pool_recovers_after_its_connections_die(stack):
    """A pooled client whose connection was closed under it (broker restart) is replaced."""
    pool = RpcPool(stack.amqp_uri, timeout=5)
    assert pool.call("contacts", "ping")["ok"]
    with pool.client() as client:
        client.connection.sock.close()  # simulate the broker dropping it
    assert pool.call("contacts", "ping")["ok"]
    pool.close()


def test_service_reply_after_the_broker_dropped_the_reply_connection_is_not_lost(stack):
    """A service's reply PublishChannel whose connection the broker dropped (restart, closed
    connection) sends the next reply on a fresh connection instead of into the dead socket."""
    broker = urlparse(stack.amqp_uri)
    proxy = CuttableProxy(broker.hostname, broker.port or 5672)
    through_proxy = broker._replace(
        netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}").geturl()
    replies = PublishChannel(through_proxy)
    reply_queue = f"rpc.reply-test-{uuid.uuid4().hex}"
    with amqp.Connection(f"{broker.hostname}:{broker.port or 5672}", userid=broker.username,
                         password=broker.password, virtual_host=broker.path[1:] or "/") as conn:
        channel = conn.channel()
        channel.exchange_declare("nameko-rpc", "topic", durable=True, auto_delete=False)
        channel.queue_declare(reply_queue, exclusive=True, auto_delete=True)
        channel.queue_bind(reply_queue, "nameko-rpc", routing_key=reply_queue)

        def received():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                message = channel.basic_get(reply_queue, no_ack=True)
                if message is not None:
                    return message.properties["correlation_id"], message.body
                time.sleep(0.02)

        try:
            replies.publish("nameko-rpc", reply_queue, b'{"result": 1, "error": null}',
                            "application/json", "utf-8", "first")
            assert received() == ("first", '{"result": 1, "error": null}')
            proxy.hang_up()  # the channel's socket reads EOF, a write would go nowhere
            time.sleep(0.2)
            replies.publish("nameko-rpc", reply_queue, b'{"result": 2, "error": null}',
                            "application/json", "utf-8", "second")
            assert received() == ("second", '{"result": 2, "error": null}')
        finally:
            replies.close()
            proxy.close()


def test_timeout_error_type(stack):
    pool = RpcPool(stack.amqp_uri, timeout=0.001)
    with pytest.raises((Timeout, Unavailable)):
        pool.call("contacts", "list_contacts", {})
    pool.close()


def test_logs_are_json_lines_carrying_the_request_id_into_the_services(api, stack, unique):
    import json
    import os
    trace = f"trace-{unique}"
    created = api.post("/contacts", json={"first_name": "Log", "last_name": unique},
                       headers={"X-Request-Id": trace})
    assert created.status_code == 201

    def lines_with_trace(name):
        path = stack.log_path(name)
        found = []
        for line in open(path, encoding="utf-8", errors="replace"):
            if trace in line:
                found.append(json.loads(line))
        return found

    deadline = time.time() + 5
    while time.time() < deadline and not lines_with_trace("contacts-0"):
        time.sleep(0.2)
    service_line = lines_with_trace("contacts-0")[0]
    assert service_line["request_id"] == trace and service_line["service"] == "contacts"
    assert service_line["entrypoint"] == "create_contact"
    assert created.json()["id"] in service_line["message"]
    gateway_line = lines_with_trace("gateway")[0]
    assert gateway_line["service"] == "gateway" and gateway_line["status"] == 201
    assert gateway_line["path"] == "/api/v1/contacts" and "duration_ms" in gateway_line


def test_every_service_exports_prometheus_metrics(stack):
    import requests
    from tests.stack import free_port
    port = free_port()
    stack.start_service("tasks", 7, CRM_METRICS_PORT=port)
    try:
        stack.wait_service("tasks")
        deadline = time.time() + 60  # the first heartbeat of a new process, on a loaded machine
        heartbeat = 'crm_service_calls_total{entrypoint="heartbeat",outcome="ok",service="tasks"}'
        text = ""
        # wait for the sample itself: the counter's HELP/TYPE lines come before any call
        while time.time() < deadline and heartbeat not in text:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                time.sleep(0.3)
                continue
            time.sleep(0.3)
        assert heartbeat in text
        assert "crm_service_call_seconds_bucket" in text
        assert 'crm_outbox_backlog{service="tasks"}' in text or "crm_outbox_backlog" in text
    finally:
        stack.stop_service("tasks", 7)


def test_the_console_files_go_gzipped_to_a_browser_that_takes_it(tmp_path):
    import gzip
    from flask import Flask
    from gateway.app import register_console
    (tmp_path / "assets").mkdir()
    script = b"export const x = 1;\n" * 500
    (tmp_path / "assets" / "app-1a2b.js").write_bytes(script)
    (tmp_path / "index.html").write_text("<!doctype html><title>CRM</title>")
    app = Flask("console-test")
    register_console(app, str(tmp_path))
    client = app.test_client()
    zipped = client.get("/assets/app-1a2b.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.status_code == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == script and len(zipped.data) < len(script) / 10
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert "immutable" in zipped.headers["Cache-Control"]
    assert "javascript" in zipped.headers["Content-Type"]
    plain = client.get("/assets/app-1a2b.js")
    assert "Content-Encoding" not in plain.headers and plain.data == script
    assert client.get("/contacts").data.startswith(b"<!doctype html>")
