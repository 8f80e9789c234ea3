"""Stream tickets: a browser's EventSource cannot send an Authorization header, and a
long-lived token must never travel in a URL. `POST /api/v1/stream/tickets` (the gateway)
stores a random ticket's hash for the signed-in user; the stream process redeems it once,
within its time to live, for that user's current identity.

Stored in the gateway's database (`stream_tickets`, a TTL index drops the expired ones),
so any stream replica redeems a ticket any gateway replica issued, exactly once."""
import hashlib
import secrets
from datetime import timedelta, timezone

from crm_common.timeutil import to_iso, utcnow

COLLECTION = "stream_tickets"


def _hash(ticket):
    return hashlib.sha256(ticket.encode()).hexdigest()


def ensure_index(db):
    db[COLLECTION].create_index("expires_at", expireAfterSeconds=0)


def issue(db, user_id, ttl_s):
    ticket = "st_" + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=ttl_s)
    db[COLLECTION].insert_one({"_id": _hash(ticket), "user_id": user_id, "expires_at": expires})
    return {"ticket": ticket, "expires_in": ttl_s, "expires_at": to_iso(expires)}


def redeem(db, ticket):
    """The ticket's user id, or None: unknown, already used or expired. The delete decides
    who used it: of two redeems at once, one deletes it, the other gets None."""
    if not ticket or len(ticket) > 200:
        return None
    key = _hash(ticket)
    doc = db[COLLECTION].find_one({"_id": key})
    if doc is None or db[COLLECTION].delete_one({"_id": key}).deleted_count != 1:
        return None
    expires = doc["expires_at"]
    if expires.tzinfo is None:  # a client without tz_aware
        expires = expires.replace(tzinfo=timezone.utc)
    return doc["user_id"] if expires > utcnow() else None
