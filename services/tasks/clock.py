"""Where the tasks service gets the time. Normally the system clock; with CRM_TEST_CLOCK=1
an offset stored in the tasks database is added, so tests can move time forward for every
replica at once instead of sleeping for minutes."""
from datetime import timedelta

from crm_common.timeutil import utcnow


class Clock:
    def __init__(self, store, enabled):
        self.store = store
        self.enabled = enabled

    def now(self):
        real = utcnow()
        if not self.enabled:
            return real
        return real + timedelta(seconds=self.store.clock_offset())

    def set(self, when):
        self._require()
        self.store.set_clock_offset((when - utcnow()).total_seconds())
        return self.now()

    def advance(self, seconds):
        self._require()
        self.store.add_clock_offset(float(seconds))
        return self.now()

    def _require(self):
        if not self.enabled:
            from crm_common.errors import Forbidden
            raise Forbidden("The test clock is disabled (set CRM_TEST_CLOCK=1)")
