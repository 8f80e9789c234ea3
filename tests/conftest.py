import uuid

import pytest

from tests.stack import Api, Stack, event_recorders


@pytest.fixture(scope="session")
def stack():
    platform = Stack()
    try:
        platform.start()
        yield platform
    finally:
        platform.close()


@pytest.fixture(scope="session")
def api(stack):
    """Signed in as the first admin (sees and may do everything)."""
    return stack.sign_in()


@pytest.fixture
def make_user(stack, api):
    """make_user(role="agent", team=None, manager_id=None, **fields) -> an Api signed in as a
    new user of that role; `.user` is the user as the API returns it."""
    def make(role="agent", team=None, manager_id=None, **fields):
        password = uuid.uuid4().hex
        body = {"email": f"{role}-{uuid.uuid4().hex[:10]}@crm.test", "password": password,
                "name": f"Test {role}", "role": role, "team": team, "manager_id": manager_id,
                **fields}
        created = api.post("/users", json=body)
        assert created.status_code == 201, created.text
        client = stack.sign_in(body["email"], password)
        client.password = password
        return client

    return make


@pytest.fixture
def make_api_key(stack, api):
    """make_api_key(scopes, **fields) -> an Api sending X-API-Key; `.key` is the created key
    record (its secret in ["key"])."""
    def make(scopes, **fields):
        created = api.post("/api-keys", json={"name": f"test-{uuid.uuid4().hex[:8]}",
                                              "scopes": list(scopes), **fields})
        assert created.status_code == 201, created.text
        client = Api(stack.base_url)
        client.key = created.json()
        client.headers["X-API-Key"] = client.key["key"]
        return client

    return make


@pytest.fixture
def record_events(stack):
    with event_recorders(stack.amqp_uri) as make:
        yield make


@pytest.fixture
def unique():
    """A short unique string, so tests never collide on emails, phones or names."""
    return uuid.uuid4().hex[:8]
