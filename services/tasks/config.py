"""The tasks service's own settings: the one place it reads its environment variables."""
import os
from dataclasses import dataclass


def _env(name, default, cast):
    value = os.environ.get(name)
    return cast(default if value in (None, "") else value)


@dataclass(frozen=True)
class TasksConfig:
    tick_seconds: float            # how often the timer scans for due reminders
    escalation_grace_minutes: int  # overdue this long and still open -> the manager is told
    callback_due_minutes: int      # a missed call's callback task is due this long after it
    scan_batch: int                # tasks read per batch (batches repeat within a tick)
    scan_concurrency: int          # tasks of a batch handled at once (publishes wait for confirms)
    claim_lease_seconds: int       # a claimed notice not marked sent by then is sent again
    test_clock: bool               # allow set_clock/advance_clock (tests only)


def load_config():
    return TasksConfig(
        tick_seconds=_env("CRM_TASKS_TICK_SECONDS", "10", float),
        escalation_grace_minutes=_env("CRM_TASKS_ESCALATION_GRACE_MINUTES", "60", int),
        callback_due_minutes=_env("CRM_TASKS_CALLBACK_DUE_MINUTES", "60", int),
        scan_batch=_env("CRM_TASKS_SCAN_BATCH", "200", int),
        scan_concurrency=_env("CRM_TASKS_SCAN_CONCURRENCY", "16", int),
        claim_lease_seconds=_env("CRM_TASKS_CLAIM_LEASE_SECONDS", "120", int),
        test_clock=_env("CRM_TEST_CLOCK", "0", str).lower() in ("1", "true", "yes"),
    )
