"""The only code in the notifications service that touches pymongo."""
from crm_common.mongo import BaseStore


class NotificationsStore(BaseStore):
    pass
