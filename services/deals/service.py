"""Deals service entrypoints (a shell for now: it starts, answers ping and health)."""
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from services.deals.store import DealsStore


class DealsService(HealthEntrypoints):
    name = "deals"

    store = MongoStore(DealsStore)
