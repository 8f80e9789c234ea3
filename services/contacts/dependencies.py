"""The contacts service's nameko extensions beyond the common ones (store, caller, outbox,
RPC): the pool of captures running beside the answers, the export cursors kept between
calls, the import jobs' timer and the group commit of the busiest timeline events."""
import threading
import time
import uuid

import eventlet
from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from crm_common.group_commit import GroupCommitIntake


class CapturePool(DependencyProvider):
    """Inbound captures running beside the answers of this process (each is ~10 database
    operations), `size` at a time; beyond that the sweeper takes them."""

    def __init__(self, size=8):
        self.size = size

    def setup(self):
        self.pool = eventlet.GreenPool(self.size)

    def get_dependency(self, worker_ctx):
        return self

    def try_spawn(self, func, *args):
        """Run func(*args) beside the caller when the pool has room; False when it has not."""
        if not self.pool.free():
            return False
        self.pool.spawn_n(func, *args)
        return True


class ExportSession:
    def __init__(self, cursor, owner):
        self.id, self.cursor, self.owner, self.used = uuid.uuid4().hex, cursor, owner, time.monotonic()


class ExportSessions(DependencyProvider):
    """Open export cursors of this process (Contacts.export_page), each used by one call at
    a time and closed after IDLE_S without a call (the client went away) or at the end."""
    IDLE_S = 120

    def setup(self):
        self.lock = threading.Lock()
        self.open_sessions = {}

    def get_dependency(self, worker_ctx):
        return self

    def stop(self):
        with self.lock:
            left, self.open_sessions = list(self.open_sessions.values()), {}
        for session in left:
            session.cursor.close()

    def open(self, cursor, owner):
        self._expire()
        return ExportSession(cursor, owner)

    def take(self, session_id, owner):
        """The session, removed while a call uses it; None when it is not here (another
        replica, expired) or belongs to someone else."""
        self._expire()
        with self.lock:
            session = self.open_sessions.get(session_id)
            if session is None or session.owner != owner:
                return None
            del self.open_sessions[session_id]
        return session

    def keep(self, session):
        session.used = time.monotonic()
        with self.lock:
            self.open_sessions[session.id] = session

    def close(self, session):
        session.cursor.close()

    def _expire(self):
        now = time.monotonic()
        with self.lock:
            stale = [s for s in self.open_sessions.values() if now - s.used > self.IDLE_S]
            for session in stale:
                del self.open_sessions[session.id]
        for session in stale:
            session.cursor.close()


class _Stopping:
    """Set when the service starts stopping: a running import job ends its batch, hands its
    lease back and returns, so the graceful stop is quick and a restart resumes at once."""
    flag = False


def stopping():
    return _Stopping.flag


class JobTimer(Timer):
    """The import jobs' timer (its interval: crm_common.config ContactsSettings)."""

    def stop(self):
        _Stopping.flag = True  # before the container waits for the running job's worker
        super().stop()


job_timer = JobTimer.decorator


class TimelineIntake(GroupCommitIntake):
    """This container's group commit of timeline entries (timeline_events.GATHERED):
    `submit(found, flush)` (Contacts.record_foreign_events on the shared store)."""
