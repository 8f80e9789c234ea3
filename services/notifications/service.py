"""Notifications service entrypoints (a shell for now: it starts, answers ping and health)."""
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from services.notifications.store import NotificationsStore


class NotificationsService(HealthEntrypoints):
    name = "notifications"

    store = MongoStore(NotificationsStore)
