"""Telephony service entrypoints (a shell for now: it starts, answers ping and health)."""
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from services.telephony.store import TelephonyStore


class TelephonyService(HealthEntrypoints):
    name = "telephony"

    store = MongoStore(TelephonyStore)
