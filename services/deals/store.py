"""The only code in the deals service that touches pymongo."""
from crm_common.mongo import BaseStore


class DealsStore(BaseStore):
    pass
