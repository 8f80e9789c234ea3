"""The outbox's deletes of published records (crm_common.messaging.outbox), without a stack."""
import eventlet
from eventlet.queue import LightQueue

from crm_common.messaging import outbox


class Collection:
    def __init__(self):
        self.deletes = []

    def delete_many(self, query):
        self.deletes.append(list(query["_id"]["$in"]))


class Channel:
    closed = False

    def close(self):
        self.closed = True


def dispatcher():
    d = outbox.OutboxDispatcher()
    d.collection, d.published, d._gathering = Collection(), LightQueue(), None
    d.channel = Channel()
    return d


def test_records_published_close_together_are_deleted_by_one_delete():
    d = dispatcher()

    def publish():
        for i in range(7):
            d.published.put(f"e{i}")
            eventlet.sleep(outbox.FORGET_GATHER_S / 20)

    eventlet.spawn(publish)
    d._forget_next()
    assert d.collection.deletes == [[f"e{i}" for i in range(7)]]


def test_long_lists_are_deleted_in_lists_of_50():
    d = dispatcher()
    for i in range(120):
        d.published.put(f"e{i}")
    d._forget_next()
    assert [len(ids) for ids in d.collection.deletes] == [50, 50, 20]


def test_a_stop_while_gathering_deletes_the_held_record_once():
    d = dispatcher()
    d.published.put("held")
    gathering = eventlet.spawn(d._forget_next)
    eventlet.sleep(0)  # it took "held" and waits for more
    assert d._gathering == "held"
    d.published.put("late")
    d.stop()
    gathering.wait()
    assert d.collection.deletes == [["held", "late"]]
    assert d.channel.closed  # the publishing connection goes with the container
