"""The only pymongo code of the gateway. Its own database (settings.database_name("gateway")):
users, api_keys, audit, rate_limits (fixed-window counters shared by every gunicorn worker)
and settings (the generated dev JWT secret)."""
import logging
import secrets
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_common.cursors import page
from crm_common.ids import new_id
from crm_common.mongo import connect, query_fields
from crm_common.timeutil import utcnow

log = logging.getLogger("gateway.store")

# audit filters in the order their index narrows a query best (SecantusDB needs the hint)
AUDIT_INDEXES = (("resource_id", "resource_id_1_at_-1__id_-1"),
                 ("request_id", "request_id_1_at_-1__id_-1"),
                 ("actor_id", "actor_id_1_at_-1__id_-1"),
                 ("api_key_id", "api_key_id_1_at_-1__id_-1"),
                 ("resource", "resource_1_at_-1__id_-1"))




class GatewayStore:
    def __init__(self, settings):
        # connect() does not block: pymongo connects in the background on first use
        self.client = connect(settings.mongo_url, "crm-gateway")
        self.db = self.client[settings.database_name("gateway")]
        self.users = self.db["users"]
        self.api_keys = self.db["api_keys"]
        self.audit = self.db["audit"]
        self.rate_limits = self.db["rate_limits"]
        self.settings = self.db["settings"]

    def ensure_indexes(self):
        # unique email: two workers creating the first admin at once end with one user
        self.users.create_index("email", unique=True)
        self.users.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.users.create_index([("manager_id", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.users.create_index([("team", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.users.create_index([("role", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.api_keys.create_index("key_hash", unique=True)
        self.api_keys.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.audit.create_index([("at", DESCENDING), ("_id", DESCENDING)])
        for field, _ in AUDIT_INDEXES:
            self.audit.create_index([(field, ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])
        # mongod drops expired counters by itself; harmless where TTL is not implemented
        self.rate_limits.create_index("expires_at", expireAfterSeconds=0)

    def ping(self):
        self.db.command("ping")
        return True

    def close(self):
        self.client.close()

    # settings
    def shared_secret(self, name):
        """A random secret generated once and shared by every worker and restart."""
        candidate = secrets.token_urlsafe(48)
        try:
            self.settings.update_one({"_id": name}, {"$setOnInsert": {"value": candidate}},
                                     upsert=True)
        except DuplicateKeyError:  # another worker inserted it at the same moment
            pass
        return self.settings.find_one({"_id": name})["value"]

    def claim(self, name, seconds):
        """True for one caller per `seconds` window (e.g. one worker re-announces users)."""
        now = utcnow()
        try:
            result = self.settings.update_one(
                {"_id": f"claim:{name}", "until": {"$lt": now}},
                {"$set": {"until": now + timedelta(seconds=seconds)}}, upsert=True)
        except DuplicateKeyError:  # the claim exists and has not expired
            return False
        return bool(result.upserted_id or result.modified_count)

    # users
    def insert_user(self, doc):
        doc["_id"] = new_id()
        self.users.insert_one(doc)  # DuplicateKeyError on a taken email
        return doc

    def insert_user_once(self, doc):
        """Create the user unless one with this email exists; returns it either way."""
        doc = {**doc, "_id": new_id()}
        try:
            self.users.update_one({"email": doc["email"]}, {"$setOnInsert": doc}, upsert=True)
        except DuplicateKeyError:  # two workers upserted the same email at once
            pass
        return self.users.find_one({"email": doc["email"]})

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def get_user_by_email(self, email):
        return self.users.find_one({"email": email})

    def get_users(self, user_ids):
        return list(self.users.find({"_id": {"$in": list(user_ids)}}))

    def update_user(self, user_id, changes, inc=None, query=None):
        update = {"$set": changes}
        if inc:
            update["$inc"] = inc
        return self.users.find_one_and_update({"_id": user_id, **(query or {})}, update,
                                              return_document=ReturnDocument.AFTER)

    def team_member_ids(self, user_id, team):
        """Everyone reporting to this user, plus everyone in the same team (when it has one)."""
        ids = {d["_id"] for d in self.users.find({"manager_id": user_id}, {"_id": 1})
               .hint("manager_id_1_created_at_-1__id_-1")}
        if team:
            ids |= {d["_id"] for d in self.users.find({"team": team}, {"_id": 1})
                    .hint("team_1_created_at_-1__id_-1")}
        ids.discard(user_id)
        return sorted(ids)

    def page_users(self, query, limit, cursor):
        fields = query_fields(query)
        hint = next((f"{f}_1_created_at_-1__id_-1" for f in ("manager_id", "team", "role")
                     if f in fields), "created_at_-1__id_-1")
        return page(self.users, query, "created_at", DESCENDING, limit, cursor, hint=hint)

    def all_users(self):
        return self.users.find({}).sort([("_id", ASCENDING)])

    # api keys
    def insert_api_key(self, doc):
        doc["_id"] = new_id()
        self.api_keys.insert_one(doc)
        return doc

    def get_api_key_by_hash(self, key_hash):
        return self.api_keys.find_one({"key_hash": key_hash})

    def get_api_key(self, key_id):
        return self.api_keys.find_one({"_id": key_id})

    def update_api_key(self, key_id, changes, query=None):
        return self.api_keys.find_one_and_update({"_id": key_id, **(query or {})},
                                                 {"$set": changes},
                                                 return_document=ReturnDocument.AFTER)

    def touch_api_key(self, key_id, now, every_s=60):
        """last_used_at, written at most once a minute per key (not a write per request)."""
        self.api_keys.update_one(
            {"_id": key_id, "$or": [{"last_used_at": None},
                                    {"last_used_at": {"$lt": now - timedelta(seconds=every_s)}}]},
            {"$set": {"last_used_at": now}})

    def page_api_keys(self, query, limit, cursor):
        return page(self.api_keys, query, "created_at", DESCENDING, limit, cursor,
                    hint="created_at_-1__id_-1")

    # audit
    def insert_audit(self, entry):
        entry["_id"] = new_id()
        self.audit.insert_one(entry)
        return entry

    def page_audit(self, query, limit, cursor):
        fields = query_fields(query)
        hint = next((name for field, name in AUDIT_INDEXES if field in fields), "at_-1__id_-1")
        return page(self.audit, query, "at", DESCENDING, limit, cursor, hint=hint)

    # rate limits
    def hit(self, key, window_start, window_s, amount=1):
        """Add to the counter of one fixed window; returns the count after this hit."""
        counter_id = f"{key}:{int(window_start.timestamp())}"
        update = {"$inc": {"n": amount},
                  "$setOnInsert": {"expires_at": window_start + timedelta(seconds=window_s)}}
        for _ in range(2):  # two first hits of a window may race on the upsert
            try:
                doc = self.rate_limits.find_one_and_update(
                    {"_id": counter_id}, update, upsert=True,
                    return_document=ReturnDocument.AFTER)
                if doc is None:
                    # SecantusDB sometimes answers None to concurrent first upserts (the
                    # increment is applied); mongod never does: read the count back
                    doc = self.rate_limits.find_one({"_id": counter_id})
                return doc["n"]
            except DuplicateKeyError:
                continue
        return self.rate_limits.find_one({"_id": counter_id})["n"]

    def count(self, key, window_start):
        doc = self.rate_limits.find_one({"_id": f"{key}:{int(window_start.timestamp())}"})
        return doc["n"] if doc else 0
