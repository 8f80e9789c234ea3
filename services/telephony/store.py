"""The only code in the telephony service that touches pymongo."""
from crm_common.mongo import BaseStore


class TelephonyStore(BaseStore):
    pass
