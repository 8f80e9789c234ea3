"""The only code in the tasks service that touches pymongo."""
from crm_common.mongo import BaseStore


class TasksStore(BaseStore):
    pass
