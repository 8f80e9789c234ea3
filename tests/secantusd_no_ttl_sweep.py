"""The test stack's database: SecantusDB's daemon (`secantusd-py`, same arguments) with its
TTL sweeper off. Test infrastructure only: product code never imports SecantusDB.

Why: after each sweep (every 60 s) SecantusDB's sweeper thread leaves a WiredTiger cursor
positioned, i.e. a read snapshot open, until its next sweep. Every write's history of that
minute stays pinned, and under sustained writes (the telephony bench at 50 ringing events/s,
~3 writes each) inserts then wait in WiredTiger's page-in/eviction (`__wt_page_in_func` ->
`__wt_sleep`, seen with `py-spy dump --native`) about 1 s each, for 5-20 s, ~110 s after the
daemon started. Measured at 20,000 contacts, 4 x 1,000 events: the third run fell 5-9 s
behind in 5 of 5 stacks with the sweeper, in none without it. mongod's TTL monitor pins
nothing. `[storage] ttl_sweep_seconds` in a --config file would say the same, but the
daemon's CLI does not pass it on. No test relies on documents expiring within a session."""
import sys

import secantus.server
from secantus.cli import main

TTL_SWEEP_SECONDS = 7 * 24 * 3600.0  # longer than any test session or benchmark
_init = secantus.server.SecantusDBServer.__init__


def _without_sweeps(self, *args, **kwargs):
    kwargs["ttl_sweep_seconds"] = TTL_SWEEP_SECONDS
    _init(self, *args, **kwargs)


secantus.server.SecantusDBServer.__init__ = _without_sweeps

if __name__ == "__main__":
    sys.exit(main())
