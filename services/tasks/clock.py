"""The tasks service's clock: crm_common.clock (the test clock's offset is kept in the tasks
database)."""
from crm_common.clock import Clock  # noqa: F401
