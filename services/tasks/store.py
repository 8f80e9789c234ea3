"""The only code in the tasks service that touches pymongo."""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_common.cursors import page
from crm_common.custom_fields import Definitions
from crm_common.ids import new_id
from crm_common.mongo import BaseStore, active_ids, find_in, set_if_newer, update_and_get

# Tasks without a date sort after every dated one: keyset cursors cannot step over nulls
# (a range condition never matches null), so the sort key is never null.
NO_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)
# Filter fields with a (field, sort, _id) index for each sort (no hints: crm_common.mongo).
SELECTIVE = ("contact_id", "deal_id", "assignee_id", "status")
SORTS = {"due_at": "sort_due", "created_at": "created_at"}
PERIOD_FORMATS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}


def _and(*conditions):
    """Conditions as one query; an $and only where two would clash on a key (e.g. $or)."""
    merged, rest = {}, []
    for condition in conditions:
        for key, value in condition.items():
            if key in merged:
                rest.append({key: value})
            else:
                merged[key] = value
    return {"$and": [merged, *rest]} if rest else merged


class TasksStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.tasks = db["tasks"]
        self.notices = db["notices"]
        self.users = db["users"]
        self.contact_calls = db["contact_calls"]
        self.rules = db["task_rules"]
        self.meta = db["meta"]
        self.custom_fields = Definitions(db["custom_fields"])  # typed custom fields of tasks

    def ensure_indexes(self):
        t = self.tasks
        t.create_index([("sort_due", ASCENDING), ("_id", ASCENDING)])
        t.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        for field in SELECTIVE:
            t.create_index([(field, ASCENDING), ("sort_due", ASCENDING), ("_id", ASCENDING)])
            t.create_index([(field, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        # what the timer scans: only open tasks with something still to announce have one
        t.create_index("alarm_at", sparse=True)
        # one task per automation cause (missed call, rule x event, recurrence step)
        t.create_index("source_key", unique=True, sparse=True)
        self.notices.create_index([("state", ASCENDING), ("lease_until", ASCENDING)])
        self.rules.create_index([("pipeline_id", ASCENDING), ("stage_id", ASCENDING),
                                 ("created_at", DESCENDING), ("_id", DESCENDING)])
        self.rules.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.custom_fields.ensure_indexes()

    def completeness_records(self, projection, assignee_id, visible):
        """Open and done tasks (not canceled) of `assignee_id` (or all) the caller sees."""
        query = {"status": {"$in": ["open", "done"]}}
        if assignee_id:
            query["assignee_id"] = assignee_id
        if visible:
            query = {"$and": [query, visible]}
        return self.tasks.find(query, projection)

    # tasks
    def insert_task(self, doc):
        """Insert; False when a task with the same source_key exists (a redelivery). An
        upsert, not an insert that fails: a duplicate key would abort the transaction the
        task is written in."""
        doc.setdefault("_id", new_id())
        self.note_span(doc)
        if not doc.get("source_key"):
            self.tasks.insert_one(doc)
            return True
        result = self.tasks.update_one({"source_key": doc["source_key"]}, {"$setOnInsert": doc},
                                       upsert=True)
        return result.upserted_id is not None

    def task_by_source_key(self, source_key):
        return self.tasks.find_one({"source_key": source_key})

    def get_task(self, task_id, visible=None):
        return self.tasks.find_one({"_id": task_id, **(visible or {})})

    def update_task(self, query, changes, inc_version=True):
        update = {"$set": changes}
        if inc_version:
            update["$inc"] = {"version": 1}
        return update_and_get(self.tasks, query, update)

    # The longest time any task lasts (due_at -> end_at): the calendar reads that far before
    # its window for meetings that started before it and still run. Raised before the task
    # write, so a calendar that can see the task also sees its span; never lowered.
    def note_span(self, doc):
        if not (doc.get("due_at") and doc.get("end_at")):
            return
        seconds = (doc["end_at"] - doc["due_at"]).total_seconds()
        for _ in range(2):  # two first upserts of the key may race: the loser retries
            try:
                self.meta.update_one({"_id": "longest_span"}, {"$max": {"seconds": seconds}},
                                     upsert=True)
                return
            except DuplicateKeyError:
                continue

    def longest_span(self):
        doc = self.meta.find_one({"_id": "longest_span"})
        return doc["seconds"] if doc else 0.0

    def set_alarm(self, task_id, version, alarm_at):
        """Only if nobody changed the task meanwhile (a change computes its own alarm)."""
        self.tasks.update_one({"_id": task_id, "version": version}, {"$set": {"alarm_at": alarm_at}})

    # the lists' queries: `visible` is the caller's owner filter, the rest plain values
    def task_filter(self, visible, filters, now):
        """The task list: equality filters, a due window, overdue (at `now`) or not."""
        conditions = [visible]
        for key in ("assignee_id", "status", "kind", "contact_id", "deal_id"):
            if filters.get(key):
                conditions.append({key: filters[key]})
        due = {}
        if filters.get("due_before"):
            due["$lt"] = filters["due_before"]
        if filters.get("due_after"):
            due["$gte"] = filters["due_after"]
            due.setdefault("$lt", NO_DATE)
        if due:
            conditions.append({"sort_due": due})
        if filters.get("overdue") is True:
            conditions += [{"status": "open"}, {"sort_due": {"$lt": now}}]
        elif filters.get("overdue") is False:
            conditions.append({"$or": [{"status": {"$ne": "open"}}, {"sort_due": {"$gte": now}}]})
        if filters.get("custom_query"):  # typed custom fields (crm_common.custom_fields)
            conditions.append(filters["custom_query"])
        return _and(*conditions)

    def calendar_filter(self, visible, assignee, start, end, statuses):
        """What starts in [start, end), and what started before `start` and still runs then
        (a meeting 9:00-11:00 in a view from 10:00): read back as far as the longest task."""
        longest = self.longest_span()
        query = _and(visible, {"assignee_id": assignee,
                               "sort_due": {"$gte": start - timedelta(seconds=longest), "$lt": end},
                               "status": {"$in": statuses}})
        if longest:
            query = _and(query, {"$or": [{"sort_due": {"$gte": start}}, {"end_at": {"$gt": start}}]})
        return query

    def open_tasks_due(self, visible, assignee, start, end, limit):
        """The assignee's open tasks due in [start, end) (start None: before `end`)."""
        due = {"$lt": end} if start is None else {"$gte": start, "$lt": end}
        query = _and(_and(visible, {"assignee_id": assignee, "status": "open"}), {"sort_due": due})
        return self.find_tasks(query, limit)

    def page_tasks(self, query, sort_field, direction, limit, cursor):
        return page(self.tasks, query, sort_field, direction, limit, cursor)

    def count_tasks(self, query, sort_field="sort_due"):
        return self.tasks.count_documents(query)

    def explain_tasks(self, query, sort_field):
        import json
        from bson import json_util
        plan = self.tasks.find(query).sort([(sort_field, 1), ("_id", 1)]).limit(51).explain()
        return json.loads(json_util.dumps(plan))

    def find_tasks(self, query, limit, sort_field="sort_due"):
        return list(self.tasks.find(query).sort([(sort_field, ASCENDING), ("_id", ASCENDING)])
                    .limit(limit))

    # The timer's polls and the by-contact / by-deal / by-stage lookups below query one
    # index's own fields and filter the few documents found in Python, unhinted:
    # SecantusDB (dev/CI) walks the WHOLE hinted index on every call (the timer's every
    # tick then read every open task with an alarm), and uses an index only when it holds
    # every predicate; mongod plans these the same way by itself.
    def deals_with_open_tasks(self, deal_ids):
        found = find_in(self.tasks, "deal_id", deal_ids, {"deal_id": 1, "status": 1})
        return {d["deal_id"] for d in found if d.get("status") == "open"}

    def due_alarms(self, now, limit):
        return list(self.tasks.find({"alarm_at": {"$lte": now}}).sort("alarm_at", ASCENDING)
                    .limit(limit))

    def open_callbacks_before(self, contact_id, when):
        return [d for d in self.tasks.find({"contact_id": contact_id})
                if d.get("status") == "open" and (d.get("source") or {}).get("type") == "call_missed"
                and d.get("missed_at") is not None and d["missed_at"] < when]

    def report(self, visible, start, end, assignee_id, by_assignee, period, now):
        """Counts per (assignee or everyone, period: day/week/month of the due date or
        None) of the tasks due in [start, end) (dated ones only without `end`)."""
        due = {"$lt": NO_DATE}
        if start:
            due["$gte"] = start
        if end:
            due["$lt"] = end
        match = _and(visible, {"sort_due": due})
        if assignee_id:
            match = _and(match, {"assignee_id": assignee_id})
        period_expr = ({"$dateToString": {"format": PERIOD_FORMATS[period], "date": "$sort_due"}}
                       if period else None)
        group_id = {"assignee_id": "$assignee_id" if by_assignee else None, "period": period_expr}
        is_open = {"$eq": ["$status", "open"]}
        is_done = {"$eq": ["$status", "done"]}
        dated = {"$lt": ["$sort_due", NO_DATE]}

        def count(condition):
            return {"$sum": {"$cond": [condition, 1, 0]}}

        pipeline = [
            {"$match": match},
            {"$group": {
                "_id": group_id,
                "total": {"$sum": 1},
                "open": count(is_open),
                "done": count(is_done),
                "canceled": count({"$eq": ["$status", "canceled"]}),
                "overdue": count({"$and": [is_open, {"$lt": ["$sort_due", now]}]}),
                "done_on_time": count({"$and": [is_done, dated,
                                                {"$lte": ["$completed_at", "$sort_due"]}]}),
                "done_late": count({"$and": [is_done, dated,
                                             {"$gt": ["$completed_at", "$sort_due"]}]}),
            }},
            {"$sort": {"_id": ASCENDING}},
        ]
        return list(self.tasks.aggregate(pipeline))

    # notices: each reminder/overdue/escalation is claimed once, by whichever replica wins
    def claim_notice(self, key, doc):
        """True for the one caller that creates the claim; False for everyone else."""
        try:
            result = self.notices.update_one({"_id": key}, {"$setOnInsert": doc}, upsert=True)
        except DuplicateKeyError:  # two upserts raced; the other one won
            return False
        return result.upserted_id is not None

    def mark_notice(self, key, state, when):
        self.notices.update_one({"_id": key}, {"$set": {"state": state, "sent_at": when}})

    def stale_claims(self, now, limit):
        return list(self.notices.find({"state": "claimed", "lease_until": {"$lte": now}})
                    .limit(limit))

    def reclaim_notice(self, key, now, lease_until):
        """Take over a claim whose holder died before sending (lease expired)."""
        return self.notices.find_one_and_update(
            {"_id": key, "state": "claimed", "lease_until": {"$lte": now}},
            {"$set": {"lease_until": lease_until}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER)

    def get_notice(self, key):
        return self.notices.find_one({"_id": key})

    # users (a copy of the gateway's directory, from user_upserted)
    def upsert_user(self, user, at):
        """The copy as of its announcement's time `at` (a later one stays: set_if_newer)."""
        set_if_newer(self.users, user["_id"], user, at)

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def active_user_ids(self, user_ids):
        return active_ids(self.users, user_ids)

    def admin_ids(self):
        """The active admins, oldest id first (who calls back when nobody else would)."""
        return [u["_id"] for u in self.users.find({"role": "admin", "active": {"$ne": False}},
                                                  {"_id": 1}).sort("_id", 1)]

    def has_users(self):
        return self.users.find_one({}, {"_id": 1}) is not None

    # the last answered call per contact (to skip or close callback tasks)
    def record_answered(self, contact_id, when):
        self.contact_calls.update_one({"_id": contact_id}, {"$max": {"last_answered_at": when}},
                                      upsert=True)

    def last_answered(self, contact_id):
        doc = self.contact_calls.find_one({"_id": contact_id})
        return doc["last_answered_at"] if doc else None

    # stage rules
    def page_rules(self, query, limit, cursor):
        return page(self.rules, query, "created_at", DESCENDING, limit, cursor)

    # the test clock's offset (shared by every replica through the database)
    def clock_offset(self):
        doc = self.meta.find_one({"_id": "clock"})
        return doc["offset_s"] if doc else 0.0

    def set_clock_offset(self, seconds):
        self.meta.update_one({"_id": "clock"}, {"$set": {"offset_s": seconds}}, upsert=True)

    def add_clock_offset(self, seconds):
        self.meta.update_one({"_id": "clock"}, {"$inc": {"offset_s": seconds}}, upsert=True)
