"""Reading every record of an owner changed in [start, end) through its `search_records`
(contracts/search.py RecordsPage), a page at a time, each page asked for as a window of
`updated_at` sized to hold about a page: an index range on mongod and on the embedded
database alike. The embedded database reads every document a query matches before it
applies the limit, and serves no range of `_id` from an index, so open-ended pages ("after
this id", "since this time") would cost the rest of the collection each: quadratic on a
first pass. Used by search's rebuild and telephony's phone-copy sync."""
from datetime import datetime, timedelta, timezone

from crm_common.errors import Timeout
from crm_common.timeutil import as_utc, parse_iso, to_iso

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# the first window, the narrowest (Mongo keeps milliseconds), the widest (an empty stretch
# doubles the window up to this)
FIRST_WINDOW = timedelta(minutes=10)
MIN_WINDOW = timedelta(milliseconds=1)
MAX_WINDOW = timedelta(days=3650)
MAX_TIMEOUTS = 8  # the owner not answering this often in a row: the pass fails (retried later)
# the deadline a caller gives one window's read: a first pass's first windows span every
# record (it does not know where they start), and an owner goes on reading a window after
# its caller gave up, so a short deadline piled up abandoned full reads (100,000 contacts: a
# first pass never finished at 3-5 s)
WINDOW_TIMEOUT_S = 60.0


def _at(value):
    return as_utc(parse_iso(value))


def changed_pages(fetch, start, end, page_size=500):
    """Yields lists of records whose window time (each item's `window_at`: its
    `updated_at`, or the time its owner windows it by) lies in [start, end).
    `fetch(since=, until=, limit=, cursor=)` answers one RecordsPage (ISO times; `cursor`
    pages through one window) and raises crm_common.errors.Timeout when the owner does not
    answer in time.

    A window that held more than a page tells how dense the changes are: the next one
    starts at the last change read, as wide as the newest half of that page spread; an
    emptier one doubles; one that timed out is cut to 1/64th. A record may be yielded twice
    (its window re-read after a dense page); callers keep the latest state."""
    width, timeouts, ceiling = FIRST_WINDOW, 0, MAX_WINDOW
    while start < end:
        stop = min(start + width, end)
        try:
            answer = fetch(since=to_iso(start), until=to_iso(stop), limit=page_size)
        except Timeout:
            # too many changes in the window (a first pass grows its window over the empty
            # years before the first record, then meets them all): a far narrower one
            timeouts += 1
            if timeouts > MAX_TIMEOUTS or stop - start <= MIN_WINDOW:
                raise
            # (and no wider until changes are read: they lie within that window)
            width = ceiling = max((stop - start) / 64, MIN_WINDOW)
            continue
        timeouts = 0
        items = answer["items"]
        if items:
            ceiling = MAX_WINDOW
        if not answer.get("next_cursor"):
            if items:
                yield items
            start = stop
            if len(items) < page_size // 2:
                width = min(width * 2, ceiling)
            continue
        yield items
        middle, last = (_at(items[i]["window_at"]) for i in (len(items) // 2, -1))
        if last > start:
            # as wide as the newest half of the page spread (the density where it ended)
            width, start = max(last - middle, MIN_WINDOW), last
            continue
        # more than a page changed within one instant (a bulk write): page through it
        instant, cursor = start + MIN_WINDOW, answer["next_cursor"]
        while cursor:
            answer = fetch(since=to_iso(start), until=to_iso(instant), cursor=cursor,
                           limit=page_size)
            if answer["items"]:
                yield answer["items"]
            cursor = answer.get("next_cursor")
        start, width = instant, MIN_WINDOW
