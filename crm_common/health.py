"""The RPC entrypoints every service has: `ping` (the process answers) and `health`
(its database answers too). The gateway's /readyz calls `health` on each service."""
from nameko.rpc import rpc


class HealthEntrypoints:
    @rpc
    def ping(self):
        return {"service": self.name, "ok": True}

    @rpc
    def health(self):
        self.store.ping()
        return {"service": self.name, "ok": True, "database": self.store.db.name}
