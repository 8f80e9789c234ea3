import uuid

import pytest

from tests.stack import Api, EventRecorder, Stack


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
    return Api(stack.base_url)


@pytest.fixture
def record_events(stack):
    recorders = []

    def make(service, routing_key="#"):
        recorder = EventRecorder(stack.amqp_uri, service, routing_key)
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.close()


@pytest.fixture
def unique():
    """A short unique string, so tests never collide on emails, phones or names."""
    return uuid.uuid4().hex[:8]
