"""The embedded dev/CI database (SecantusDB) is reached with retryable writes off, and only
it: SecantusDB keeps one record per retryable write (mongod keeps one per session) and walks
them all on every write, so each write costs more as writes accumulate (up to 10,000
records: the telephony bench's database CPU per event doubled within 3,000 events; see
docs/developing.md). A MONGO_URL of a real mongod keeps pymongo's default."""
import os
import re

from pymongo.uri_parser import parse_uri

from crm_common.mongo import connect
from tests.stack import ROOT


def retry_writes(url):
    client = connect(url, "test")  # the services' and the gateway's client
    try:
        return client.options.retry_writes
    finally:
        client.close()


def test_the_dev_script_starts_the_embedded_database_with_retryable_writes_off():
    script = open(os.path.join(ROOT, "crm")).read()
    exported = re.findall(r'export MONGO_URL="([^"]+)"', script)
    assert exported, "crm up no longer exports the embedded database's URL"
    for url in exported:
        assert parse_uri(url.replace("$MONGO_PORT", "27017"))["options"].get("retryWrites") is False
        assert retry_writes(url.replace("$MONGO_PORT", "27017")) is False


def test_the_test_stack_reaches_secantusdb_with_retryable_writes_off(stack):
    assert stack.env()["MONGO_URL"] == stack.mongo_url  # what every service and the gateway get
    if os.environ.get("TEST_MONGO_URL"):
        return  # a real mongod: whatever its URL says
    assert retry_writes(stack.mongo_url) is False
    # writes still work as before (inserts, updates, deletes answered and applied)
    db = stack.mongo[f"{stack.db_prefix}devdb"]
    client_db = connect(stack.mongo_url, "test")[f"{stack.db_prefix}devdb"]
    try:
        client_db.docs.insert_one({"_id": "a", "v": 1})
        assert client_db.docs.update_one({"_id": "a"}, {"$inc": {"v": 1}}).modified_count == 1
        assert db.docs.find_one({"_id": "a"})["v"] == 2
        assert client_db.docs.delete_one({"_id": "a"}).deleted_count == 1
    finally:
        client_db.client.close()


def test_product_code_keeps_pymongos_default_for_other_urls():
    # production's MONGO_URL (a real mongod, replica set) keeps retryable writes
    assert retry_writes("mongodb://mongo:27017/") is True
    assert retry_writes("mongodb://127.0.0.1:27017/") is True


def test_the_test_stack_runs_secantusdb_without_its_ttl_sweeper(stack):
    """A sweep leaves a WiredTiger snapshot open until the next one, which stalled every
    write for seconds under sustained load (tests/secantusd_no_ttl_sweep.py)."""
    if os.environ.get("TEST_MONGO_URL"):
        return
    import inspect

    import secantus.server  # test infrastructure only, never product code

    assert "ttl_sweep_seconds" in inspect.signature(secantus.server.SecantusDBServer.__init__).parameters
    assert stack.mongo_proc.args[1].endswith(os.path.join("tests", "secantusd_no_ttl_sweep.py"))
    assert stack.mongo_proc.poll() is None and stack.mongo.admin.command("ping")["ok"] == 1
