"""Funnel counters: the funnel report read from pre-aggregated documents instead of the
whole deal_history, with exactly the numbers of the history aggregation (store/reports.py
funnel). Pure: builds updates and folds documents; the store does the I/O.

Why bitmaps: `entered` and `won` count DISTINCT deals over the period (a deal entering a
stage on two days counts once, `won` needs the same deal to enter a won stage in the period
too), so per-day sums cannot give them. Each deal has a number, dense per (pipeline, owner)
(`funnel_no`, on the deal and on each of its history entries), and a counter document holds
per stage the bitmap of the numbers that entered it (`e.<stage>.w<i>`, 64-bit words), the
bitmap of those that entered a won-kind stage (`won.w<i>`), and the additive `out.<stage>`
(moves out of the stage) and `secs.<stage>` (seconds spent in it, summed). Over a period the
bitmaps of an owner are OR-ed: entered = popcount(e), won = popcount(e & won); owners are
summed (a deal has one owner: history follows the deal's owner, and so do its bits).

One document per (pipeline, owner, UTC month) in funnel_months and per (pipeline, owner,
UTC day) in funnel_days, both written for every history entry. A period reads the months
inside it, the days of its partial months, and the history itself for the partial days at
its two ends (the (pipeline_id, at) range of at most two days), so what is read does not
grow with the number of history entries.

Cannot drift: bits are set with OR (writing an entry's bits twice changes nothing); the
additive counters are applied only by the call whose upsert inserted the history entry
(its id is deal:version, so a retried or repaired write finds it and adds nothing). A
process dying between the history insert and the counter update is repaired by
rebuilding from the history (RPC rebuild_funnel_counters; also at start when the marker of
this layout is missing). Not repaired: an owner change racing a move can leave that move's
entry with the old owner in the history itself (as before the counters); the counters then
count the deal for both owners where the history aggregation counts it once."""
from datetime import datetime, timedelta, timezone

VERSION = 1
WORD = 64
MASK = (1 << WORD) - 1


def owner_key(pipeline_id, owner_id):
    """Key of a (pipeline, owner) number space (funnel_numbers._id)."""
    return f"{pipeline_id}|{owner_id or ''}"


def _signed(value):
    return value - (1 << WORD) if value >= 1 << (WORD - 1) else value


def bit(number):
    """(word field, signed 64-bit mask) of a deal number."""
    return f"w{number // WORD}", _signed(1 << (number % WORD))


def month_key(moment):
    return f"{moment.year:04d}-{moment.month:02d}"  # strftime drops the zeros of year 1


def day_key(moment):
    return f"{month_key(moment)}-{moment.day:02d}"


def periods(at):
    """The month and day documents an entry at `at` counts in."""
    return month_key(at), day_key(at)


def doc_id(pipeline_id, owner_id, period):
    return f"{owner_key(pipeline_id, owner_id)}|{period}"


def entry_update(entry, sign=1):
    """The counter changes of one history entry (or, with sign -1, their removal):
    (bits {path: mask}, incs {path: n}). Bits are OR-ed in, or AND-ed out with ~mask."""
    if entry.get("funnel_no") is None:
        return {}, {}
    word, mask = bit(entry["funnel_no"])
    bits = {f"e.{entry['to_stage_id']}.{word}": mask}
    if entry.get("to_kind") == "won":
        bits[f"won.{word}"] = mask
    incs = {}
    if entry.get("seconds_in_from_stage") is not None and entry.get("from_stage_id"):
        incs[f"out.{entry['from_stage_id']}"] = sign
        incs[f"secs.{entry['from_stage_id']}"] = sign * entry["seconds_in_from_stage"]
    if sign < 0:
        bits = {path: ~mask for path, mask in bits.items()}
    return bits, incs


class Tally:
    """Per owner: bitmap per stage, won bitmap, moves out and seconds per stage."""

    def __init__(self):
        self.owners = {}

    def _owner(self, owner_id):
        return self.owners.setdefault(owner_id, {"e": {}, "won": 0, "out": {}, "secs": {}})

    def add_doc(self, doc):
        """A counter document (month or day)."""
        acc = self._owner(doc.get("owner_id"))
        for stage, words in (doc.get("e") or {}).items():
            acc["e"][stage] = acc["e"].get(stage, 0) | _bits(words)
        acc["won"] |= _bits(doc.get("won") or {})
        for key in ("out", "secs"):
            for stage, value in (doc.get(key) or {}).items():
                acc[key][stage] = acc[key].get(stage, 0) + value

    def add_entry(self, entry):
        """A history entry (the partial days at a period's ends)."""
        if entry.get("funnel_no") is None:
            raise ValueError(f"history entry {entry.get('_id')} has no funnel_no: rebuild the counters")
        acc = self._owner(entry.get("owner_id"))
        flag = 1 << entry["funnel_no"]
        acc["e"][entry["to_stage_id"]] = acc["e"].get(entry["to_stage_id"], 0) | flag
        if entry.get("to_kind") == "won":
            acc["won"] |= flag
        if entry.get("seconds_in_from_stage") is not None and entry.get("from_stage_id"):
            stage = entry["from_stage_id"]
            acc["out"][stage] = acc["out"].get(stage, 0) + 1
            acc["secs"][stage] = acc["secs"].get(stage, 0) + entry["seconds_in_from_stage"]

    def rows(self):
        """The shape of the history aggregation's result: {stage: {entered, won}},
        {stage: {avg, moves_out}}."""
        entered, times = {}, {}
        for acc in self.owners.values():
            for stage, bits in acc["e"].items():
                row = entered.setdefault(stage, {"entered": 0, "won": 0})
                row["entered"] += bits.bit_count()
                row["won"] += (bits & acc["won"]).bit_count()
            for stage, count in acc["out"].items():
                row = times.setdefault(stage, {"moves_out": 0, "secs": 0})
                row["moves_out"] += count
                row["secs"] += acc["secs"].get(stage, 0)
        times = {stage: {"moves_out": r["moves_out"], "avg": r["secs"] / r["moves_out"]}
                 for stage, r in times.items() if r["moves_out"]}
        entered = {stage: r for stage, r in entered.items() if r["entered"]}
        return entered, times


def _bits(words):
    value = 0
    for word, part in words.items():
        value |= (part & MASK) << (WORD * int(word[1:]))
    return value


class Builder:
    """Counter documents recomputed from history entries (the rebuild)."""

    def __init__(self):
        self.docs = {"funnel_months": {}, "funnel_days": {}}

    def add(self, entry):
        bits, incs = entry_update(entry)
        if not bits:
            return
        month, day = periods(entry["at"])
        for collection, period in (("funnel_months", month), ("funnel_days", day)):
            key = doc_id(entry["pipeline_id"], entry.get("owner_id"), period)
            doc = self.docs[collection].setdefault(key, {
                "_id": key, "pipeline_id": entry["pipeline_id"],
                "owner_id": entry.get("owner_id"), "period": period})
            for path, mask in bits.items():
                parent, field = _walk(doc, path)
                parent[field] = _signed((parent.get(field, 0) | mask) & MASK)
            for path, n in incs.items():
                parent, field = _walk(doc, path)
                parent[field] = parent.get(field, 0) + n


def _walk(doc, path):
    *parents, field = path.split(".")
    for name in parents:
        doc = doc.setdefault(name, {})
    return doc, field


def day_floor(moment):
    return datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)


def month_floor(moment):
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)


def next_month(moment):
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)


def split(start, end):
    """[start, end) -> what to read: ("history", a, b) for partial days at the ends,
    ("funnel_days", first day, end day) and ("funnel_months", first month, end month)
    (period strings, end excluded) for the whole UTC days and months inside."""
    first_day = day_floor(start)
    if first_day < start:
        try:
            first_day += timedelta(days=1)
        except OverflowError:  # the calendar's last day
            return [("history", start, end)]
    last_day = day_floor(end)
    if first_day >= last_day:  # no whole day inside: at most two partial days
        return [("history", start, end)]
    parts = []
    if start < first_day:
        parts.append(("history", start, first_day))
    first_month = month_floor(first_day)
    if first_month < first_day:
        try:
            first_month = next_month(first_month)
        except (OverflowError, ValueError):  # December of year 9999: no whole month
            first_month = last_day
    last_month = month_floor(last_day)
    if first_month < last_month:
        if first_day < first_month:
            parts.append(("funnel_days", day_key(first_day), day_key(first_month)))
        parts.append(("funnel_months", month_key(first_month), month_key(last_month)))
        if last_month < last_day:
            parts.append(("funnel_days", day_key(last_month), day_key(last_day)))
    else:
        parts.append(("funnel_days", day_key(first_day), day_key(last_day)))
    if last_day < end:
        parts.append(("history", last_day, end))
    return parts


def owners_of(owners):
    """The report's owners (None: everyone, or a list of ids) as None or a set."""
    return None if owners is None else set(owners)
