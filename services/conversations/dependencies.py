"""The conversations service's own nameko dependencies: the green threads that sync
mailboxes (one per mailbox, a few at a time per process) and send queued messages beside
the answers, stopped with the service."""
import eventlet
from nameko.extensions import DependencyProvider

from crm_common.config import get_settings


class Workers(DependencyProvider):
    def setup(self):
        self.stopping = False
        self.syncs = eventlet.GreenPool(get_settings().conversations.sync_concurrency)
        self.running = set()  # mailbox ids synced by this process now
        self.sends = eventlet.GreenPool(1)
        # messages this process claimed as it queued them, for its next send run
        self.claimed = []
        self.send_rate = None  # messages/s of this process's latest list sent

    def stop(self):
        """Syncs waiting in IDLE end now, giving their mailboxes back."""
        self.stopping = True
        for thread in list(self.syncs.coroutines_running):
            thread.kill()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self

    def is_stopping(self):
        return self.stopping

    def room(self):
        return self.syncs.free()

    def sync(self, mailbox_id, run):
        """Run `run(mailbox_id)` in its own green thread unless it runs here already."""
        if mailbox_id in self.running or self.stopping:
            return False
        self.running.add(mailbox_id)

        def go():
            try:
                run(mailbox_id)
            finally:
                self.running.discard(mailbox_id)
        self.syncs.spawn_n(go)
        return True

    def send_soon(self, func):
        """A queued message goes out now, beside the answer: one run at a time per process,
        which takes what is queued meanwhile on the same connections (the timer takes what
        is left)."""
        if self.sends.free() and not self.stopping:
            self.sends.spawn_n(func)

    def may_claim(self, most, lease_s):
        """A message queued now may be claimed at once (its own lease) for this process's
        run, while fewer than `most` wait for it, and fewer than its send rate begins in a
        third of a lease (at least 10): a longer backlog stays due in the database,
        claimed by lists as it is sent (a handed-over one not begun before its lease's
        end would wait for the lease to run out)."""
        if self.stopping:
            return False
        if self.send_rate is not None:
            most = min(most, max(10, int(self.send_rate * lease_s / 3)))
        return len(self.claimed) < most

    def note_rate(self, count, seconds):
        if count >= 5 and seconds > 0:
            self.send_rate = count / seconds

    def hand_over(self, msg):
        self.claimed.append(msg)

    def take_claimed(self, most):
        """The oldest `most` of them."""
        taken, self.claimed = self.claimed[:most], self.claimed[most:]
        return taken
