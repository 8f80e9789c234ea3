"""Where a service with timers gets the time. Normally the system clock; with CRM_TEST_CLOCK=1
an offset stored in the service's own database is added, so tests can move time forward for
every replica at once instead of sleeping for minutes. `store` has clock_offset(),
set_clock_offset(seconds) and add_clock_offset(seconds) (tasks, automation)."""
import os
from datetime import timedelta

from crm_common.errors import EXPECTED, Forbidden
from crm_common.messaging.rpc import rpc
from crm_common.timeutil import parse_iso, to_iso, utcnow


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
            raise Forbidden("The test clock is disabled (set CRM_TEST_CLOCK=1)")


class ClockEntrypoints:
    """The RPCs of a service with a `clock` property (a Clock) and `tick_seconds`: what
    tests drive time with, and which replica answered."""

    tick_seconds = None

    @rpc
    def replica_info(self):
        """Which process answered and with which clock (tests tell two replicas apart)."""
        return {"pid": os.getpid(), "test_clock": self.clock.enabled,
                "tick_seconds": self.tick_seconds}

    @rpc(expected_exceptions=EXPECTED)
    def now(self):
        return to_iso(self.clock.now())

    @rpc(expected_exceptions=EXPECTED)
    def set_clock(self, iso):
        return to_iso(self.clock.set(parse_iso(iso)))

    @rpc(expected_exceptions=EXPECTED)
    def advance_clock(self, seconds):
        return to_iso(self.clock.advance(seconds))
