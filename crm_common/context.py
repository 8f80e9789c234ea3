"""Who is calling: the gateway puts the caller and request id in nameko's context data
(AMQP headers), so every service and every event it dispatches carries them."""
from nameko.extensions import DependencyProvider

CONTEXT_KEYS = ("request_id", "user_id", "user_role", "user_team", "user_team_members")


class Caller(dict):
    @property
    def user_id(self):
        return self.get("user_id")

    @property
    def role(self):
        return self.get("user_role")

    @property
    def request_id(self):
        return self.get("request_id")

    @property
    def team_members(self):
        return list(self.get("user_team_members") or [])

    def owner_filter(self, *fields):
        """The Mongo condition for records this caller may see, applied in the query itself.

        admin, or no user (a service acting on its own, e.g. an event handler): everything.
        manager: records owned by / assigned to anyone of their team (and themselves).
        agent: records owned by / assigned to themselves.
        `fields` are the record's person fields (e.g. "owner_id", "assignee_id")."""
        fields = fields or ("owner_id",)
        if self.role in (None, "admin"):
            return {}
        ids = [self.user_id]
        if self.role == "manager":
            ids += [m for m in self.team_members if m != self.user_id]
        conditions = [{field: {"$in": ids}} for field in fields]
        return conditions[0] if len(conditions) == 1 else {"$or": conditions}


class CallerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        data = worker_ctx.context_data
        return Caller({key: data.get(key) for key in CONTEXT_KEYS})
