"""The shape of the code, checked from its source without a stack: who may import whom, where
Mongo queries and process plumbing live, what every service has, that every event has a
schema which producers and consumers go through, and that one module reads the environment.
Each rule is one test; a failure names the file and line that breaks it."""
import ast
import importlib
import inspect
import os
import re

import pytest

from tests.stack import ROOT

SERVICES = ("contacts", "deals", "tasks", "notifications", "telephony", "conversations")
# the packages a service, the gateway and the shared code are made of
SHARED = ("crm_common", "contracts")
# what an event type looks like (`contact_created`, `call_missed`)
EVENT_TYPE = re.compile(r"^[a-z]+(?:_[a-z]+)+$")
# a Mongo operator or field path in a query: "$set", "$in", "$sum", "$amount"
MONGO_OPERATOR = re.compile(r"^\$[A-Za-z]")


def python_files(*tops):
    """(path relative to the repository, parsed module) of every .py file under `tops`."""
    for top in tops:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, ROOT), ast.parse(open(path, encoding="utf-8").read(), path)


def service_packages():
    """Every service package: the five named above and any other folder under services/."""
    found = {d for d in os.listdir(os.path.join(ROOT, "services"))
             if os.path.isdir(os.path.join(ROOT, "services", d)) and not d.startswith((".", "__"))}
    return sorted(found | set(SERVICES))


def imported_modules(tree):
    """(line, absolute module name) of every import in a module, `importlib.import_module`
    and `__import__` of a string literal included. Relative imports stay inside their own
    package, so they are left out."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from services import deals`
                yield node.lineno, f"{node.module}.{alias.name}"
        elif (isinstance(node, ast.Call) and _name(node.func) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def _name(func):
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _within(module, package):
    return module == package or module.startswith(package + ".")


def test_gateway_contracts_and_shared_code_import_no_service():
    broken = [f"{path}:{line} imports {module}"
              for path, tree in python_files("gateway", *SHARED)
              for line, module in imported_modules(tree) if _within(module, "services")]
    assert not broken, "the gateway, contracts/ and crm_common/ use contracts/, never services.*:\n" + "\n".join(broken)


def test_no_service_imports_another_service():
    broken = []
    for service in service_packages():
        own = f"services.{service}"
        for path, tree in python_files(f"services/{service}"):
            broken += [f"{path}:{line} imports {module}" for line, module in imported_modules(tree)
                       if _within(module, "services") and not _within(module, own)
                       and module != "services"]
            broken += [f"{path}:{line} imports {module}" for line, module in imported_modules(tree)
                       if _within(module, "gateway")]
    assert not broken, "a service imports only its own package, contracts/ and crm_common/:\n" + "\n".join(broken)


def test_service_modules_hold_entrypoints_only_no_pymongo_or_eventlet():
    broken = []
    for service in service_packages():
        path = os.path.join(ROOT, "services", service, "service.py")
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        lines = {}
        for line, module in imported_modules(tree):
            if any(_within(module, banned) for banned in ("pymongo", "eventlet")):
                lines.setdefault(line, module)
        broken += [f"services/{service}/service.py:{line} imports {module}"
                   for line, module in sorted(lines.items())]
    assert not broken, ("pymongo belongs in store.py, eventlet pools and loops in "
                        "dependencies.py:\n" + "\n".join(broken))


def _is_store_module(path):
    """A service's `store.py` or anything under a `store/` package."""
    parts = path.split(os.sep)
    return parts[-1] == "store.py" or "store" in parts[2:-1]


def _operator_literal(node):
    """The `$...` text of a string literal (or an f-string's leading text), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        text = str(node.values[0].value)
    else:
        return None
    return text if MONGO_OPERATOR.match(text) else None


def mongo_operators(tree):
    """(line, text) of every `$` string used as a dict key or value, or as a subscript key
    (`query["$or"] = ...`)."""
    for node in ast.walk(tree):
        candidates = []
        if isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None] + node.values
        elif isinstance(node, ast.Subscript):
            candidates = [node.slice]
        for candidate in candidates:
            text = _operator_literal(candidate)
            if text:
                yield candidate.lineno, text


def test_mongo_operators_only_in_store_modules():
    broken = []
    for path, tree in python_files("services"):
        found = sorted(set(mongo_operators(tree)))
        if found and not _is_store_module(path):
            broken.append(f"{path}: lines {', '.join(str(line) for line in sorted({l for l, _ in found}))}"
                          f" ({', '.join(sorted({text for _, text in found}))})")
    assert not broken, ("Mongo queries ($ operators) belong in a service's store.py or store/ "
                        "package:\n" + "\n".join(broken))


def hints(tree):
    """(line, code) of every hinted query: `.hint(...)` or a `hint=` argument."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "hint":
                yield node.lineno, ".hint()"
            yield from ((node.lineno, "hint=") for k in node.keywords if k.arg == "hint")


def test_no_query_is_hinted():
    broken = [f"{path}:{line} {code}" for path, tree in python_files("gateway", "services", *SHARED)
              for line, code in hints(tree)]
    assert not broken, ("no hints: queries name an index's leading fields and both servers pick "
                        "it (crm_common/mongo.py):\n" + "\n".join(broken))


def test_every_service_has_a_readme_and_a_contract_module():
    missing = []
    for service in service_packages():
        readme = os.path.join(ROOT, "services", service, "README.md")
        if not os.path.isfile(readme) or not open(readme, encoding="utf-8").read().strip():
            missing.append(f"services/{service}/README.md")
        if not os.path.isfile(os.path.join(ROOT, "contracts", f"{service}.py")):
            missing.append(f"contracts/{service}.py")
    assert not missing, "missing: " + ", ".join(missing)


# ---- events: every published event has a schema; every consumer loads through it -------

def event_schemas():
    """The event registry, {(source, event_type): marshmallow schema}: the contract every
    producer dumps through and every consumer loads through (`contracts.events.registry()`)."""
    from contracts import events
    assert hasattr(events, "registry"), "contracts/events.py has no registry() of event schemas"
    return events.registry()


def published_in_source():
    """{(source, event_type): "path:line"} of every event type a producer names literally:
    `envelope(source, "x_y", ...)`, `publish_event(uri, source, "x_y", ...)`, the services'
    `_event("x_y", ...)` / `_deal_event(...)` builders and `dispatch("x_y", ...)`. Types built
    at run time (`f"deal_{kind}"`) are the registry's to list."""
    found = {}
    for top in ("gateway", "services"):
        for path, tree in python_files(top):
            parts = path.split(os.sep)
            source = "gateway" if parts[0] == "gateway" else parts[1]
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = _name(node.func) or ""
                if not (name in ("envelope", "publish_event", "dispatch") or name.endswith("_event")):
                    continue
                literals = [a.value for a in node.args
                            if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                named_source = next((s for s in literals if s in (*service_packages(), "gateway")), source)
                for literal in literals:
                    if EVENT_TYPE.match(literal):
                        found.setdefault((named_source, literal), f"{path}:{node.lineno}")
    return found


def consumers():
    """{(source, event_type): ["Service.method"]} of every event entrypoint, and the ones that
    are not the reliable handler (so do not load through the contract)."""
    from nameko.events import EventHandler

    from crm_common.messaging.events import ReliableEventHandler
    found, unreliable = {}, []
    for service in service_packages():
        module = importlib.import_module(f"services.{service}.service")
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if c.__module__ == module.__name__ and getattr(c, "name", None) == service]
        assert classes, f"services/{service}/service.py defines no service named {service!r}"
        for cls in classes:
            for attribute, member in inspect.getmembers(cls):
                for entrypoint in getattr(member, "nameko_entrypoints", ()):
                    if not isinstance(entrypoint, EventHandler):
                        continue
                    where = f"{cls.__name__}.{attribute}"
                    if not isinstance(entrypoint, ReliableEventHandler):
                        unreliable.append(where)
                    types = getattr(entrypoint, "event_types", None) or (entrypoint.event_type,)
                    for event_type in types:
                        found.setdefault((entrypoint.source_service, event_type), []).append(where)
    return found, unreliable


def test_every_event_schema_is_a_marshmallow_schema():
    from marshmallow import Schema
    schemas = event_schemas()
    assert schemas, "contracts.events.registry() lists no event"
    broken = [f"{key}: {schema!r}" for key, schema in schemas.items()
              if not (isinstance(key, tuple) and len(key) == 2)
              or not (isinstance(schema, Schema)
                      or (inspect.isclass(schema) and issubclass(schema, Schema)))]
    assert not broken, "\n".join(broken)


def test_every_published_event_has_a_schema():
    schemas = event_schemas()
    missing = [f"{where} publishes {source}.{event_type}"
               for (source, event_type), where in sorted(published_in_source().items())
               if (source, event_type) not in schemas]
    assert not missing, "no schema in contracts/ for:\n" + "\n".join(missing)


def test_every_consumed_event_has_a_schema():
    schemas = event_schemas()
    found, _ = consumers()
    missing = [f"{', '.join(where)} consume {source}.{event_type}"
               for (source, event_type), where in sorted(found.items())
               if (source, event_type) not in schemas]
    assert not missing, "no schema in contracts/ for:\n" + "\n".join(missing)


def test_every_consumer_loads_through_the_contract():
    from crm_common.messaging.events import ReliableEventHandler
    _, unreliable = consumers()
    assert not unreliable, "event handlers that are not reliable_handler: " + ", ".join(unreliable)
    assert "load_event(" in inspect.getsource(ReliableEventHandler.handle_message)


def test_every_publish_path_dumps_through_the_contract():
    """The outbox (every service's writes) and `publish_event` (the gateway, scripts)."""
    from crm_common.messaging import outbox, publish
    assert "dump_event(" in inspect.getsource(outbox)
    assert "dump_event(" in inspect.getsource(publish.publish_event)


# ---- configuration ----------------------------------------------------------------------

def environment_reads(tree):
    """(line, code) of every use of the process environment: `os.environ`, `os.getenv`,
    `os.environb`, or `environ` / `getenv` imported from os."""
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "os"
                for alias in node.names if alias.name in ("environ", "environb", "getenv")}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            yield node.lineno, f"os.{node.attr}"
        elif isinstance(node, ast.Name) and node.id in imported and isinstance(node.ctx, ast.Load):
            yield node.lineno, node.id


def test_only_crm_common_config_reads_the_environment():
    allowed = os.path.join("crm_common", "config.py")
    broken = [f"{path}:{line} {code}"
              for path, tree in python_files("gateway", "services", *SHARED) if path != allowed
              for line, code in environment_reads(tree)]
    assert not broken, ("settings are read in crm_common/config.py (one settings object per "
                        "process):\n" + "\n".join(broken))


@pytest.mark.parametrize("rule", [mongo_operators, environment_reads, imported_modules, hints])
def test_the_rules_see_what_they_look_for(rule):
    """Each scanner finds its target in a small sample, so a passing rule is not a blind one."""
    sample = ast.parse(
        "import os\nfrom os import environ\nfrom services.deals import store\n"
        "q = {'$set': {'a': 1}, 'b': '$amount'}\nq['$or'] = []\nx = os.environ.get('A')\n"
        "y = environ['B']\nimportlib.import_module('services.tasks.domain')\n"
        "c.find({}).hint('a_1')\nc.count_documents({}, hint='a_1')\n")
    found = list(rule(sample))
    expected = {
        mongo_operators: {(4, "$set"), (4, "$amount"), (5, "$or")},
        environment_reads: {(6, "os.environ"), (7, "environ")},
        imported_modules: {(1, "os"), (3, "services.deals"), (3, "services.deals.store"),
                           (8, "services.tasks.domain")},
        hints: {(9, ".hint()"), (10, "hint=")},
    }[rule]
    assert expected <= set(found), found
