"""Who is calling: the gateway puts the caller and request id in nameko's context data
(AMQP headers), so every service and every event it dispatches carries them."""
from nameko.extensions import DependencyProvider

CONTEXT_KEYS = ("request_id", "user_id", "user_role", "user_team")


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


class CallerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        data = worker_ctx.context_data
        return Caller({key: data.get(key) for key in CONTEXT_KEYS})
