"""Users, sign-in, tokens, API keys, roles, rate limits, audit and security headers,
through the real stack (gunicorn gateway with 2 workers, its own database, RabbitMQ)."""
import time
import uuid

import jwt
import pytest

from tests.stack import Api


def _error(response):
    return response.json()["error"]


def test_first_admin_exists_once_and_signs_in(stack, api):
    users = stack.db("gateway")["users"]
    admins = list(users.find({"email": stack.admin_email}))
    assert len(admins) == 1 and admins[0]["role"] == "admin"
    assert admins[0]["password_hash"].startswith("$argon2id$")
    assert stack.admin_password not in str(admins[0])
    me = api.get("/users/me")
    assert me.status_code == 200
    assert me.json()["email"] == stack.admin_email and "password_hash" not in me.json()
    assert "password" not in me.json()


def test_login_answers_a_bearer_token_with_expiry(stack):
    response = Api(stack.base_url).post("/auth/login", json={
        "email": stack.admin_email.upper(), "password": stack.admin_password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 8 * 3600
    claims = jwt.decode(body["access_token"], stack.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == body["user"]["id"] and claims["exp"] > time.time()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nonsense"},
                                     {"Authorization": "Basic abc"}, {"X-API-Key": "crm_nope"}])
def test_requests_without_valid_credentials_are_401(stack, headers):
    response = Api(stack.base_url).get("/contacts", headers=headers)
    assert response.status_code == 401
    assert _error(response)["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_password_and_unknown_email_look_the_same(stack, make_user):
    agent = make_user("agent")
    anonymous = Api(stack.base_url)
    wrong = anonymous.post("/auth/login", json={"email": agent.user["email"], "password": "x" * 9})
    unknown = anonymous.post("/auth/login", json={"email": f"no-{uuid.uuid4().hex}@crm.test",
                                                  "password": "x" * 9})
    assert wrong.status_code == unknown.status_code == 401
    assert _error(wrong)["message"] == _error(unknown)["message"]


def test_expired_and_forged_tokens_are_refused(stack, api):
    me = api.get("/users/me").json()
    now = int(time.time())
    expired = jwt.encode({"sub": me["id"], "iat": now - 7200, "exp": now - 3600, "tv": 0},
                         stack.jwt_secret, algorithm="HS256")
    response = Api(stack.base_url).get("/contacts", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and _error(response)["details"]["reason"] == "token_expired"
    forged = jwt.encode({"sub": me["id"], "iat": now, "exp": now + 60, "tv": 0},
                        "not-the-secret", algorithm="HS256")
    response = Api(stack.base_url).get("/contacts", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and _error(response)["details"]["reason"] == "invalid_token"
    unsigned = jwt.encode({"sub": me["id"], "iat": now, "exp": now + 60}, None, algorithm="none")
    response = Api(stack.base_url).get("/contacts", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


def test_disabled_user_is_refused_at_once_even_with_a_valid_token(api, make_user):
    agent = make_user("agent")
    assert agent.get("/users/me").status_code == 200
    disabled = api.patch(f"/users/{agent.user['id']}", json={"active": False})
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    for _ in range(4):  # whichever gunicorn worker answers
        response = agent.get("/contacts")
        assert response.status_code == 401
    login = agent.post("/auth/login", json={"email": agent.user["email"], "password": "whatever1"})
    assert login.status_code == 401
    api.patch(f"/users/{agent.user['id']}", json={"active": True})
    # re-enabled, the old token stays dead (disabling revoked every token); a new sign-in works
    assert agent.get("/users/me").status_code == 401


def test_refresh_and_logout_everywhere(stack, make_user):
    agent = make_user("agent")
    refreshed = agent.post("/auth/refresh")
    assert refreshed.status_code == 200
    second = Api(stack.base_url)
    second.headers["Authorization"] = "Bearer " + refreshed.json()["access_token"]
    assert second.get("/users/me").status_code == 200
    assert agent.post("/auth/logout").status_code == 200
    assert agent.get("/users/me").status_code == 401
    assert second.get("/users/me").status_code == 401


def test_own_profile_and_password_change(stack, make_user):
    agent = make_user("agent")
    changed = agent.patch("/users/me", json={"timezone": "Europe/Rome", "language": "it"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["timezone"] == "Europe/Rome"
    no_extension = agent.patch("/users/me", json={"extension": "201"})
    assert no_extension.status_code == 422  # the extension is an admin's (docs/auth.md)
    bad_zone = agent.patch("/users/me", json={"timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 422
    no_role_change = agent.patch("/users/me", json={"role": "admin"})
    assert no_role_change.status_code == 422  # unknown field for a profile
    wrong = agent.patch("/users/me", json={"password": "n3w-password", "current_password": "no"})
    assert wrong.status_code == 422
    ok = agent.patch("/users/me", json={"password": "n3w-password",
                                        "current_password": agent.password})
    assert ok.status_code == 200
    assert agent.get("/users/me").status_code == 401  # a new password signs out everywhere
    assert stack.sign_in(agent.user["email"], "n3w-password").get("/users/me").status_code == 200


def test_user_admin_rules(api, make_user, unique):
    agent = make_user("agent")
    body = {"email": f"x{unique}@crm.test", "name": "X", "role": "agent", "password": "p" * 10}
    assert agent.post("/users", json=body).status_code == 403
    assert agent.get("/users").status_code == 403
    assert agent.patch(f"/users/{agent.user['id']}", json={"role": "admin"}).status_code == 403
    assert agent.get("/api-keys").status_code == 403
    assert agent.get("/audit").status_code == 403
    created = api.post("/users", json=body)
    assert created.status_code == 201 and "password" not in created.json()
    again = api.post("/users", json={**body, "email": body["email"].upper()})
    assert again.status_code == 409
    assert api.post("/users", json={**body, "email": f"y{unique}@crm.test",
                                    "role": "boss"}).status_code == 422
    assert api.post("/users", json={**body, "email": f"z{unique}@crm.test",
                                    "manager_id": "nobody"}).status_code == 422
    me = api.get("/users/me").json()
    assert api.patch(f"/users/{me['id']}", json={"active": False}).status_code == 422
    assert api.get("/users/unknown-id").status_code == 404


def test_manager_sees_their_team_only(api, make_user, unique):
    manager = make_user("manager", team=f"t{unique}")
    direct = make_user("agent", manager_id=manager.user["id"])
    teammate = make_user("agent", team=f"t{unique}")
    stranger = make_user("agent", team=f"other{unique}")
    listed = manager.get("/users", params={"limit": 500})
    assert listed.status_code == 200
    ids = {u["id"] for u in listed.json()["items"]}
    assert ids == {manager.user["id"], direct.user["id"], teammate.user["id"]}
    assert manager.get(f"/users/{direct.user['id']}").status_code == 200
    assert manager.get(f"/users/{stranger.user['id']}").status_code == 404
    assert manager.patch(f"/users/{direct.user['id']}", json={"name": "Y"}).status_code == 403


def test_user_upserted_is_announced_without_password(api, record_events, unique):
    recorder = record_events("gateway", "user_upserted")
    created = api.post("/users", json={"email": f"ev{unique}@crm.test", "name": "Ev",
                                       "role": "agent", "password": "p" * 10,
                                       "extension": "300"}).json()
    api.patch(f"/users/{created['id']}", json={"team": "north"})
    events = recorder.wait_for(lambda e: e["data"]["user"]["id"] == created["id"]
                               and e["data"]["user"]["team"] == "north")
    assert events, recorder.events
    user = events[0]["data"]["user"]
    assert events[0]["source"] == "gateway"
    assert user["extension"] == "300" and user["role"] == "agent" and user["active"] is True
    assert set(user) == {"id", "email", "name", "role", "team", "manager_id", "active",
                         "extension", "phone", "telegram_chat_id", "language", "timezone"}


def test_every_user_is_reannounced_when_the_gateway_starts(stack, record_events, make_user):
    agent = make_user("agent")
    recorder = record_events("gateway", "user_upserted")
    gateway = stack.processes.pop("gateway")
    gateway.terminate()
    gateway.wait(30)
    # one worker re-announces per start (a claim of a few seconds); forget the last one
    stack.db("gateway")["settings"].delete_one({"_id": "claim:announce_users"})
    stack.start_gateway()
    found = recorder.wait_for(lambda e: e["data"]["user"]["id"] == agent.user["id"], timeout=20)
    assert found
    assert agent.get("/users/me").status_code == 200  # tokens survive a restart (same secret)


def test_api_keys_scoped_shown_once_revocable(stack, api, make_api_key, unique):
    reader = make_api_key(["contacts:read"])
    assert reader.key["key"].startswith("crm_") and reader.key["scopes"] == ["contacts:read"]
    stored = stack.db("gateway")["api_keys"].find_one({"_id": reader.key["id"]})
    assert reader.key["key"] not in str(stored) and len(stored["key_hash"]) == 64
    shown = api.get(f"/api-keys/{reader.key['id']}").json()
    assert "key" not in shown and shown["last_used_at"] is None

    assert reader.get("/contacts", params={"limit": 1}).status_code == 200
    wrong_scope = reader.post("/contacts", json={"first_name": "K", "last_name": unique})
    assert wrong_scope.status_code == 403
    assert wrong_scope.json()["error"]["details"]["required_scopes"] == ["contacts:write"]
    assert reader.get("/companies").status_code == 403
    assert reader.get("/users").status_code == 403  # admin routes never take a key
    assert reader.get("/users/me").status_code == 403
    assert api.get(f"/api-keys/{reader.key['id']}").json()["last_used_at"] is not None

    writer = make_api_key(["contacts:write", "contacts:read"])
    assert writer.post("/contacts", json={"first_name": "K", "last_name": unique}).status_code == 201

    revoked = api.delete(f"/api-keys/{reader.key['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    response = reader.get("/contacts")
    assert response.status_code == 401 and _error(response)["details"]["reason"] == "api_key_revoked"
    listed = api.get("/api-keys", params={"limit": 500}).json()["items"]
    assert reader.key["id"] not in {k["id"] for k in listed}
    listed = api.get("/api-keys", params={"limit": 500, "include_revoked": "true"}).json()["items"]
    assert reader.key["id"] in {k["id"] for k in listed}
    assert api.post("/api-keys", json={"name": "bad", "scopes": ["everything"]}).status_code == 422


def test_rate_limit_per_api_key_answers_429_with_retry_after(make_api_key):
    client = make_api_key(["contacts:read"], rate_limit_per_minute=3)
    statuses = [client.get("/contacts", params={"limit": 1}) for _ in range(8)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert 1 <= int(limited[0].headers["Retry-After"]) <= 60
    assert limited[0].json()["error"]["code"] == "rate_limited"


def test_rate_limit_per_user(api, make_user):
    agent = make_user("agent", rate_limit_per_minute=3)
    codes = [agent.get("/users/me").status_code for _ in range(8)]
    assert 429 in codes and codes[0] == 200


def test_login_attempts_are_throttled_per_email_and_ip(stack, make_user):
    agent = make_user("agent")
    anonymous = Api(stack.base_url)
    codes = []
    for _ in range(25):
        codes.append(anonymous.post("/auth/login", json={"email": agent.user["email"],
                                                         "password": "wrong-pass"}).status_code)
        if codes[-1] == 429:
            break
    assert codes[-1] == 429 and set(codes[:-1]) == {401}
    right = anonymous.post("/auth/login", json={"email": agent.user["email"],
                                                "password": agent.password})
    assert right.status_code == 429 and int(right.headers["Retry-After"]) >= 1
    # another account from the same address is not affected
    other = make_user("agent")
    assert other.get("/users/me").status_code == 200


def test_audit_records_writes_with_fields(api, make_user, unique):
    contact = api.post("/contacts", json={"first_name": "Aud", "last_name": unique},
                       headers={"X-Request-Id": f"audit-{unique}"}).json()
    api.patch(f"/contacts/{contact['id']}", json={"status": "customer", "tags": ["x"]},
              headers={"X-Request-Id": f"audit-patch-{unique}"})
    api.get(f"/contacts/{contact['id']}")  # reads are not audited
    api.patch(f"/contacts/{contact['id']}", json={"status": "nope"})  # failed: not audited
    entries = api.get("/audit", params={"resource_id": contact["id"]}).json()["items"]
    assert [e["method"] for e in entries] == ["PATCH", "POST"]
    patch = entries[0]
    me = api.get("/users/me").json()
    assert patch["fields"] == ["status", "tags"] and patch["status"] == 200
    assert patch["actor_id"] == me["id"] and patch["actor_role"] == "admin"
    assert patch["request_id"] == f"audit-patch-{unique}" and patch["resource"] == "contacts"
    assert patch["path"] == f"/api/v1/contacts/{contact['id']}" and patch["at"].endswith("Z")
    by_request = api.get("/audit", params={"request_id": f"audit-{unique}"}).json()["items"]
    assert [e["method"] for e in by_request] == ["POST"]
    assert by_request[0]["resource_id"] == contact["id"]
    agent = make_user("agent")
    mine = api.get("/audit", params={"actor_id": agent.user["id"]}).json()["items"]
    assert [e["route"] for e in mine] == ["/api/v1/auth/login"]
    assert "password" in mine[0]["fields"]  # the key name only, never the value
    page1 = api.get("/audit", params={"limit": 2}).json()
    page2 = api.get("/audit", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert not {e["id"] for e in page1["items"]} & {e["id"] for e in page2["items"]}


def test_security_headers_on_every_answer(stack, api):
    for response in (api.get("/contacts"), api.get("/nowhere"), api.get("/healthz"),
                     Api(stack.base_url).get("/contacts"), api.get("/api/docs")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "Content-Security-Policy" in response.headers
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert api.get("/contacts").headers["Cache-Control"] == "no-store"


def test_cors_allows_configured_origins_only(stack):
    anonymous = Api(stack.base_url)
    preflight = anonymous.request("OPTIONS", "/contacts", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = anonymous.request("OPTIONS", "/contacts", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_ingest_routes_are_not_audited_per_request(api, stack, unique):
    """A form post is recorded in /inbound/requests, not once more in the audit log."""
    import requests
    form = api.post("/forms", json={"name": f"Audit {unique}"}).json()
    api.post("/contacts", json={"first_name": "Audited", "emails": [f"aud-{unique}@example.com"]},
             headers={"X-Request-Id": f"aud-contact-{unique}"})
    posted = requests.post(f"{stack.base_url}/api/v1/forms/{form['key']}/submissions",
                           json={"email": f"form-{unique}@example.com"},
                           headers={"X-Request-Id": f"aud-form-{unique}"}, timeout=10)
    assert posted.status_code == 202
    assert api.get("/audit", params={"request_id": f"aud-contact-{unique}"}).json()["items"]
    assert api.get("/audit", params={"request_id": f"aud-form-{unique}"}).json()["items"] == []
