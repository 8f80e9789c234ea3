"""Tasks service entrypoints (a shell for now: it starts, answers ping and health)."""
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from services.tasks.store import TasksStore


class TasksService(HealthEntrypoints):
    name = "tasks"

    store = MongoStore(TasksStore)
