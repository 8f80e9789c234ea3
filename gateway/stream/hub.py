"""The streams of one process: who listens, what each may see, and the replay buffer.

Every event gets an id `<boot>-<seq>` (boot: this process's random id, seq: its counter),
kept in a bounded buffer with its audience. A stream that reconnects with `Last-Event-ID`
gets what it missed, filtered by its own visibility, when that id is still in this
process's buffer; otherwise (another replica, a restart, too old) a `resync` event tells
the client to reload what it shows."""
import json
import uuid
from collections import deque

from gateway.field_access import redact_event
from gateway.stream.visibility import EVERYONE, KIND_OF, OBJECT_OF

RESYNC = "resync"


class Listener:
    """One open stream: the caller's visibility and its queue of (id, name, json)."""

    def __init__(self, identity, queue):
        self.user_id = identity["user_id"]
        self.role = identity.get("role")
        self.person_ids = (None if self.role == "admin"
                           else {self.user_id, *(identity.get("team_members") or [])}
                           if self.role == "manager" else {self.user_id})
        # a custom role (gateway/roles.py): each kind is read with its own grant; the
        # watch index holds the widest scope and may_read narrows it per event
        grants = identity.get("grants")
        self.read_scopes = None
        if grants is not None:
            self.read_scopes = {obj: (actions or {}).get("read") for obj, actions in grants.items()}
            self.team = {self.user_id, *(identity.get("team_members") or [])}
            scopes = set(self.read_scopes.values())
            self.person_ids = (None if "all" in scopes else self.team if "team" in scopes
                               else {self.user_id})
        self.fields = identity.get("fields")  # field grants: hidden fields left out
        self.queue = queue
        self.overflowed = False

    def may_read(self, name, audience):
        """A custom role's grant for this event's kind of record (built-in roles: True)."""
        if self.read_scopes is None or isinstance(audience, tuple):  # one's own notices
            return True
        kind = KIND_OF.get(name)
        scope = self.read_scopes.get(OBJECT_OF.get(kind)) if kind else None
        if not scope:
            return False
        if scope == "all" or audience == EVERYONE:
            return True
        people = {self.user_id} if scope == "own" else self.team
        return not people.isdisjoint(audience)

    def body(self, name, payload, body):
        """The event's JSON as this stream may see it (a custom role's hidden fields out);
        `payload`: the event (None: parsed from `body` when needed)."""
        if not self.fields:
            return body
        payload = json.loads(body) if payload is None else payload
        redacted = redact_event(self.fields, KIND_OF.get(name), payload)
        return body if redacted is payload else json.dumps(
            redacted, separators=(",", ":"), ensure_ascii=False, default=str)

    def may_see(self, audience):
        if audience == EVERYONE:
            return True
        if isinstance(audience, tuple):  # ("self", user_id)
            return audience[1] == self.user_id
        return self.person_ids is None or not self.person_ids.isdisjoint(audience)


class Hub:
    def __init__(self, buffer_size=10000, boot=None):
        self.boot = boot or uuid.uuid4().hex[:8]
        self.seq = 0
        self.buffer = deque(maxlen=buffer_size)   # (seq, id, name, json, audience)
        self.listeners = set()
        self.watchers = {}     # person id -> listeners whose visibility includes them
        self.admins = set()
        self.by_user = {}      # user id -> that user's own listeners
        self.seen = {}         # event_id -> seq, bounded with the buffer (redeliveries)
        self.published = 0

    # listeners
    def add(self, listener):
        self.listeners.add(listener)
        self.by_user.setdefault(listener.user_id, set()).add(listener)
        if listener.person_ids is None:
            self.admins.add(listener)
        else:
            for person in listener.person_ids:
                self.watchers.setdefault(person, set()).add(listener)

    def remove(self, listener):
        self.listeners.discard(listener)
        self.admins.discard(listener)
        self._discard(self.by_user, listener.user_id, listener)
        for person in listener.person_ids or ():
            self._discard(self.watchers, person, listener)

    @staticmethod
    def _discard(index, key, listener):
        found = index.get(key)
        if found is not None:
            found.discard(listener)
            if not found:
                del index[key]

    def _audience(self, audience):
        if audience == EVERYONE:
            return self.listeners
        if isinstance(audience, tuple):
            return self.by_user.get(audience[1], ())
        found = set(self.admins)
        for person in audience:
            found |= self.watchers.get(person, set())
        return found

    # events
    def publish(self, name, payload, audience, event_id=None):
        """Buffer one event and queue it for every listener that may see it; an event_id
        already buffered under this name (an at-least-once redelivery) is dropped."""
        if event_id is not None:
            key = (event_id, name)
            if key in self.seen:
                return None
        self.seq += 1
        stream_id = f"{self.boot}-{self.seq}"
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        if len(self.buffer) == self.buffer.maxlen:
            dropped = self.buffer[0]
            self.seen.pop(dropped[5], None)
        key = (event_id, name) if event_id is not None else None
        self.buffer.append((self.seq, stream_id, name, body, audience, key))
        if key is not None:
            self.seen[key] = self.seq
        for listener in self._audience(audience):
            if listener.may_read(name, audience):
                self.offer(listener, (stream_id, name, listener.body(name, payload, body)))
        self.published += 1
        return stream_id

    def offer(self, listener, item):
        if listener.overflowed:
            return
        if listener.queue.full():
            # a stream too slow to read its events: it is told to resync and closed
            listener.overflowed = True
            return
        listener.queue.put_nowait(item)

    def replay(self, listener, last_event_id):
        """What `listener` missed after `last_event_id`, or None when this process cannot
        tell (the caller sends `resync`)."""
        boot, _, seq = (last_event_id or "").partition("-")
        if boot != self.boot or not seq.isdigit():
            return None
        seq = int(seq)
        if seq > self.seq:
            return None
        if seq < self.seq and (not self.buffer or self.buffer[0][0] > seq + 1):
            return None  # some of what it missed is no longer buffered
        return [(stream_id, name, listener.body(name, None, body))
                for s, stream_id, name, body, audience, _ in self.buffer
                if s > seq and listener.may_see(audience) and listener.may_read(name, audience)]

    def stats(self):
        return {"streams": len(self.listeners), "buffered": len(self.buffer),
                "published": self.published, "last_event_id": f"{self.boot}-{self.seq}"}
