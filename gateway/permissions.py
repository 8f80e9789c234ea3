"""The permission matrix: the one table of who may do what (docs/auth.md is generated from it).

Every route names one permission (`Route.permission`); `gateway.auth.authorize` looks the
caller up in this table before the route runs, and nowhere else decides whether a role may
call a route. A cell is the scope a role gets:

- `all`: the whole company's records;
- `team`: the records of the caller and their team (the services filter with
  `crm_common.context.Caller.owner_filter`, and give records only to those people:
  `Caller.check_assign`);
- `own`: the caller's own records (same mechanism, the caller alone);
- `self`: the caller's own account (profile, inbox, session);
- `-`: refused with 403.

The `api_key` column is the scope an API key needs (`-`: keys never pass). Within its
scopes a key acts with `all` (an integration such as a PBX routes every caller).

`python -m gateway.permissions` prints the Markdown table; `--write` puts it into
docs/auth.md between the markers, and tests/test_security_authz.py fails when they differ.
"""
import os
import sys
from dataclasses import dataclass

ALL, TEAM, OWN, SELF, NO = "all", "team", "own", "self", None
ROLES = ("admin", "manager", "agent")
PUBLIC = "public"  # a route anyone may call (it proves itself: signature, form key)


@dataclass(frozen=True)
class Permission:
    name: str
    admin: str
    manager: str
    agent: str
    api_key: str  # the scope a key needs; None: keys never
    what: str

    def scope(self, role):
        return getattr(self, role) if role in ROLES else None


def _p(name, admin, manager, agent, api_key, what):
    return Permission(name, admin, manager, agent, api_key, what)


MATRIX = {p.name: p for p in (
    # people and access (gateway)
    _p("users:read", ALL, TEAM, NO, NO, "list and read users"),
    _p("users:write", ALL, NO, NO, NO, "create and change users: role, team, manager, "
       "`extension` (unique), password, active"),
    _p("users:self", SELF, SELF, SELF, NO, "read and change one's own profile (not the "
       "extension) and password"),
    _p("session:self", SELF, SELF, SELF, NO, "refresh one's token, sign out everywhere"),
    _p("stream:self", SELF, SELF, SELF, NO, "open one's live stream (a single-use ticket); "
       "it carries what the caller's read cells let them see, and their own notifications"),
    _p("api-keys:manage", ALL, NO, NO, NO, "create, list, read, revoke API keys"),
    _p("audit:read", ALL, NO, NO, NO, "read the audit log"),
    _p("roles:manage", ALL, NO, NO, NO, "define, change and delete custom roles (grants per "
       "object, action and scope; fields a role may only read or not see); users with a "
       "custom role get what its grants give (gateway/roles.py, gateway/field_access.py)"),
    _p("operations:manage", ALL, NO, NO, NO, "read and replay dead letters"),
    _p("webhooks:manage", ALL, NO, NO, NO, "webhook subscriptions and their deliveries"),
    # customers
    _p("search:read", ALL, TEAM, OWN, NO, "one search box over contacts, companies, deals, "
       "tasks, calls and notes (those on records the caller sees), each within the "
       "caller's visibility"),
    _p("contacts:read", ALL, TEAM, OWN, "contacts:read", "list, search, look up, read, "
       "timeline, export, duplicates; everyone also reads contacts with no owner"),
    _p("contacts:write", ALL, TEAM, OWN, "contacts:write", "create, change, delete, "
       "restore, merge; a manager also changes contacts with no owner"),
    _p("imports:read", ALL, TEAM, OWN, "imports:read", "imports started by the scope's "
       "people, their row errors"),
    _p("imports:write", ALL, TEAM, OWN, "imports:write", "start and undo imports; updates "
       "touch only contacts the importer may change, owners follow the assignment rule"),
    _p("companies:read", ALL, ALL, ALL, "companies:read", "companies are shared reference "
       "data (their people: visible contacts only)"),
    _p("companies:create", ALL, ALL, ALL, "companies:write", "create a company"),
    _p("companies:manage", ALL, ALL, NO, "companies:write", "rename, delete, restore a "
       "company (a rename rewrites `company_name` on every contact of it)"),
    # sales
    _p("deals:read", ALL, TEAM, OWN, "deals:read", "list, read, history"),
    _p("deals:write", ALL, TEAM, OWN, "deals:write", "create, change, move, delete, restore"),
    _p("deal-settings:read", ALL, ALL, ALL, "deals:read", "lead source names, lost reasons"),
    _p("deal-settings:write", ALL, ALL, NO, "deals:write", "change lead source names, lost "
       "reasons"),
    _p("pipelines:read", ALL, ALL, ALL, "pipelines:read", "pipelines and their stages"),
    _p("pipelines:write", ALL, ALL, NO, "pipelines:write", "create, change, delete pipelines"),
    _p("lead-sources:read", ALL, ALL, NO, "lead-sources:read", "lead sources with their "
       "costs"),
    _p("lead-sources:write", ALL, ALL, NO, "lead-sources:write", "create, change, delete "
       "lead sources and costs"),
    _p("targets:read", ALL, TEAM, OWN, "targets:read", "targets and their progress"),
    _p("targets:write", ALL, TEAM, NO, "targets:write", "create, change, delete targets (a "
       "manager: for people of their team, or their own team)"),
    _p("reports:read", ALL, TEAM, OWN, "reports:read", "funnel, sales, forecast, calls, "
       "tasks reports over the scope's records"),
    _p("reports:sources", ALL, TEAM, NO, "reports:read", "lead source report (company-wide "
       "costs)"),
    # products, quotes, invoices, files (the sales service)
    _p("products:read", ALL, ALL, ALL, "products:read", "the product catalogue and price lists"),
    _p("products:write", ALL, ALL, NO, "products:write", "create and change products and "
       "price lists, set prices"),
    _p("deal-items:price", ALL, TEAM, NO, "deals:write", "override a line item's unit price "
       "(lines themselves: `deals:write` on the deal)"),
    _p("sales-settings:read", ALL, ALL, ALL, "sales:read", "seller details, numbering series, "
       "terms"),
    _p("sales-settings:write", ALL, NO, NO, NO, "change the sales settings"),
    _p("quotes:read", ALL, TEAM, OWN, "quotes:read", "quotes of the scope's deals, their PDF"),
    _p("quotes:write", ALL, TEAM, OWN, "quotes:write", "draft, change, revise, send, accept, "
       "reject quotes of the scope's deals"),
    _p("invoices:read", ALL, TEAM, OWN, "invoices:read", "invoices of the scope's deals, their "
       "PDF"),
    _p("invoices:write", ALL, TEAM, OWN, "invoices:write", "issue, send, void invoices of the "
       "scope's deals"),
    _p("invoices:pay", ALL, TEAM, NO, "invoices:write", "record payments"),
    _p("sales-reports:read", ALL, ALL, NO, "reports:read", "company-wide purchase history: "
       "buyers of a product, sales by product, average check"),
    _p("files:read", ALL, TEAM, OWN, "files:read", "list and download files of records the "
       "caller sees; make a share link"),
    _p("files:write", ALL, TEAM, OWN, "files:write", "upload, delete, restore files of records "
       "the caller sees"),
    # work
    _p("tasks:read", ALL, TEAM, OWN, "tasks:read", "tasks, calendar, agenda (assigned to or "
       "created by the scope's people)"),
    _p("tasks:write", ALL, TEAM, OWN, "tasks:write", "create, change, complete, cancel "
       "tasks"),
    _p("automation:read", ALL, TEAM, NO, "automation:read", "automation rules, their run "
       "logs and dry runs, segments and campaigns (a manager: their team's rules)"),
    _p("automation:write", ALL, TEAM, NO, "automation:write", "create, change, enable, "
       "delete rules (a manager's rule acts only on their team's records and assigns within "
       "it), segments, campaigns and sending them"),
    _p("task-rules:read", ALL, ALL, ALL, "task-rules:read", "stage automation rules"),
    _p("task-rules:write", ALL, ALL, NO, "task-rules:write", "create, change, delete stage "
       "rules (company-wide automation; a manager's rule assigns within their team)"),
    _p("custom-fields:read", ALL, ALL, ALL, "custom-fields:read", "the typed custom fields "
       "defined per entity (contact, company, deal, task)"),
    _p("custom-fields:manage", ALL, NO, NO, NO, "define, rename, retire custom fields"),
    _p("notes:read", ALL, TEAM, OWN, "notes:read", "notes, their comments and commitments on "
       "records the caller sees (asked of the record's service)"),
    _p("notes:write", ALL, TEAM, OWN, "notes:write", "write notes and comments on records "
       "the caller sees, pin them; edit one's own; delete one's own (an admin: any)"),
    _p("notifications:self", ALL, SELF, SELF, NO, "one's inbox and notification "
       "preferences (an admin: anyone's, with `user_id`)"),
    # telephony
    _p("calls:read", ALL, TEAM, OWN, "calls:read", "the call log (calls whose agent or "
       "contact owner is in the scope)"),
    _p("calls:originate", ALL, TEAM, OWN, "calls:write", "click-to-call as oneself (a "
       "manager: as someone of their team) to a number or a visible contact"),
    _p("telephony:ingest", ALL, NO, NO, "telephony:write", "call events from a PBX "
       "(canonical JSON, Asterisk AMI)"),
    _p("telephony:connector", ALL, NO, NO, "telephony-connector:read", "the AMI connector's "
       "AMI settings stored through the API, its secret included"),
    _p("telephony-settings:manage", ALL, NO, NO, NO, "read and change the telephony "
       "settings (secrets write-only), test a provider's connection"),
    # inbound leads
    _p("inbound:ingest", ALL, NO, NO, "inbound:write", "messages from messenger "
       "integrations"),
    _p("inbound:read", ALL, TEAM, NO, NO, "inbound requests with their raw payload (a "
       "manager: those routed to their team, or not routed to anyone)"),
    _p("forms:read", ALL, ALL, NO, NO, "web forms and channel routes"),
    _p("forms:write", ALL, TEAM, NO, NO, "create, change, delete forms (a manager: forms "
       "that route only to their team, or that they made and route to no one)"),
    # conversations with clients
    _p("conversations:read", ALL, TEAM, OWN, "conversations:read", "the inbox and its "
       "messages (conversations assigned to or owned by someone of the scope, and the "
       "unassigned ones of nobody's contacts)"),
    _p("conversations:write", ALL, TEAM, OWN, "conversations:write", "reply, write to a "
       "visible contact, assign (within the scope), close, reopen"),
    _p("mailboxes:manage", ALL, OWN, OWN, NO, "connect and change mailboxes (a manager or "
       "agent: their personal mailbox; shared ones: an admin)"),
    _p("channels:manage", ALL, NO, NO, NO, "Telegram bots, WhatsApp numbers and SMS "
       "gateways used to answer clients"),
    _p("templates:read", ALL, ALL, ALL, "templates:read", "message templates, and filling "
       "one for a contact or deal the caller sees (the composer's preview)"),
    _p("templates:manage", ALL, ALL, NO, NO, "write, change and delete message templates"),
)}


def granted(role):
    """What a role may do: {permission: scope} without the refused ones (GET /users/me
    gives it to a console so it can hide the buttons a user may not use)."""
    return {name: p.scope(role) for name, p in MATRIX.items() if p.scope(role)}


def permission_of(route):
    """The route's permission; a route without a known one is a programming error."""
    name = getattr(route, "permission", None)
    if name == PUBLIC:
        if not route.public:
            raise ValueError(f"{route.method} {route.path}: permission 'public' needs public=True")
        return None
    if name not in MATRIX:
        raise ValueError(f"{route.method} {route.path} names no permission of the matrix "
                         f"(gateway/permissions.py): {name!r}")
    if route.public:
        raise ValueError(f"{route.method} {route.path}: a public route's permission is 'public'")
    return MATRIX[name]


def check_routes(routes):
    for route in routes:
        permission = permission_of(route)
        if permission and route.scopes and tuple(route.scopes) != (permission.api_key,):
            raise ValueError(f"{route.method} {route.path}: scopes {route.scopes} differ from "
                             f"the matrix's {permission.api_key!r}")


# the Markdown table of docs/auth.md ---------------------------------------------------

DOC_START = "<!-- permission matrix: generated by `python -m gateway.permissions --write` -->"
DOC_END = "<!-- end of permission matrix -->"
DOC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "auth.md")


def markdown(routes):
    by_permission = {}
    # in path order: the order routes were registered in depends on which module imported first
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        by_permission.setdefault(route.permission, []).append(
            f"`{route.method} {route.path.removeprefix('/api/v1')}`")
    lines = ["| permission | admin | manager | agent | API key scope | what | routes |",
             "|---|---|---|---|---|---|---|"]
    for p in MATRIX.values():
        cells = [c or "-" for c in (p.admin, p.manager, p.agent)]
        lines.append(f"| `{p.name}` | {' | '.join(cells)} | "
                     f"{'`' + p.api_key + '`' if p.api_key else '-'} | {p.what} | "
                     f"{', '.join(by_permission.get(p.name, [])) or '(none)'} |")
    public = by_permission.get(PUBLIC, [])
    lines.append(f"| `{PUBLIC}` | anyone | anyone | anyone | none needed | no sign-in; the "
                 f"route proves the sender itself (signature, form key) | {', '.join(public)} |")
    return "\n".join(lines)


def doc_section(routes):
    return f"{DOC_START}\n{markdown(routes)}\n{DOC_END}"


def documented_section(text):
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start < 0 or end < 0:
        return None
    return text[start:end + len(DOC_END)]


def _routes():
    import importlib

    from gateway.routes import ROUTE_MODULES, api
    for name in ROUTE_MODULES:
        importlib.import_module(f"gateway.routes.{name}")
    return api.routes


def main(argv):
    routes = _routes()
    section = doc_section(routes)
    if "--write" not in argv:
        print(section)
        return 0
    with open(DOC_PATH, encoding="utf-8") as handle:
        text = handle.read()
    current = documented_section(text)
    if current is None:
        raise SystemExit(f"{DOC_PATH} has no permission matrix markers")
    with open(DOC_PATH, "w", encoding="utf-8") as handle:
        handle.write(text.replace(current, section))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
