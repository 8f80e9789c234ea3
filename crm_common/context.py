"""Who is calling: the gateway puts the caller and request id in nameko's context data
(AMQP headers), so every service and every event it dispatches carries them."""
from nameko.extensions import DependencyProvider

from crm_common.errors import Forbidden

CONTEXT_KEYS = ("request_id", "user_id", "user_role", "user_team", "user_team_members",
                "user_scope")
BUILT_IN_ROLES = ("admin", "manager", "agent")


def user_context(user, team_members, request_id=None):
    """The RPC context of `user` (a users-copy document with its "id"), as the gateway sets
    it for their own requests (a custom role reads its own records only): to ask another
    service something as that user (crm_common.messaging.rpc.ActingRpc)."""
    role = user.get("role")
    context = {"user_id": user["id"], "user_role": role, "user_team": user.get("team"),
               "user_team_members": list(team_members or [])}
    if role not in BUILT_IN_ROLES:
        context["user_scope"] = "own"
    if request_id:
        context["request_id"] = request_id
    return context


class Caller(dict):
    @property
    def user_id(self):
        return self.get("user_id")

    @property
    def role(self):
        return self.get("user_role")

    @property
    def team(self):
        return self.get("user_team")

    @property
    def request_id(self):
        return self.get("request_id")

    @property
    def team_members(self):
        return list(self.get("user_team_members") or [])

    def person_ids(self):
        """The people whose records this caller sees and acts for; None = everyone.

        admin, or no user (an API key or a service acting on its own): everyone.
        manager: themselves and their team. agent: themselves. A custom role: the scope the
        gateway found for this request's route (`user_scope`: all, team, else own)."""
        if self.role in (None, "admin"):
            return None
        if self.role not in BUILT_IN_ROLES:
            scope = self.get("user_scope")
            if scope == "all":
                return None
            ids = [self.user_id]
            if scope == "team":
                ids += [m for m in self.team_members if m != self.user_id]
            return ids
        ids = [self.user_id]
        if self.role == "manager":
            ids += [m for m in self.team_members if m != self.user_id]
        return ids

    def owner_filter(self, *fields):
        """The Mongo condition for records this caller may see, applied in the query itself.

        `fields` are the record's person fields (e.g. "owner_id", "assignee_id"): a record
        is visible when one of them names someone of `person_ids()`."""
        fields = fields or ("owner_id",)
        ids = self.person_ids()
        if ids is None:
            return {}
        conditions = [{field: {"$in": ids}} for field in fields]
        return conditions[0] if len(conditions) == 1 else {"$or": conditions}

    # The assignment rule (docs/auth.md "Giving a record to someone"): the one rule of every
    # write that sets an owner, an assignee, an agent or a target's user. An agent names
    # only themselves, a manager themselves or their team, an admin (or API key) anyone.
    # Whether the person named exists and is active is the gateway's one check, before the
    # call (gateway/user_refs.py); this rule is whom the caller may name.
    def may_assign(self, user_id):
        ids = self.person_ids()
        return ids is None or user_id in ids

    def check_assign(self, user_id, field="owner_id"):
        """403 unless this caller may give a record to `user_id` (None, nobody: only an
        admin, as in PATCH /contacts)."""
        if self.may_assign(user_id):
            return
        raise Forbidden(f"You cannot give this to that user ({field})",
                        {"field": field, "value": user_id})

    def check_team(self, team, field="team"):
        """403 unless this caller may act for a whole team: an admin any, a manager their own."""
        if self.role in (None, "admin") or (self.role == "manager" and team and team == self.team):
            return
        raise Forbidden("You cannot act for this team", {"field": field, "value": team})


class CallerContext(DependencyProvider):
    def get_dependency(self, worker_ctx):
        data = worker_ctx.context_data
        return Caller({key: data.get(key) for key in CONTEXT_KEYS})
