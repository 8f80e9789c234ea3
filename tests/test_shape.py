"""The shape every service keeps, checked on the source (no stack): service.py holds
entrypoints only (no pymongo, no eventlet: pools and background work are DependencyProviders
in dependencies.py), Mongo queries live only in a service's store (store.py or store/),
and no query is hinted (crm_common/mongo.py says why)."""
import ast
import os
import re

from tests.stack import ROOT, SERVICES

SERVICES_DIR = os.path.join(ROOT, "services")
# a Mongo operator or field path as a string: "$set", "$in", "$amount", f"$rows.{x}"
OPERATOR = re.compile(r"^\$[A-Za-z]")
HINT = re.compile(r"\.hint\(|\bhint=")


def python_files(top):
    for folder, _, files in os.walk(top):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def is_store(path):
    parts = os.path.relpath(path, SERVICES_DIR).split(os.sep)
    return parts[1] == "store.py" or parts[1] == "store"


def string_literals(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def imported_modules(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_service_modules_import_neither_pymongo_nor_eventlet():
    for service in SERVICES:
        path = os.path.join(SERVICES_DIR, service, "service.py")
        tree = ast.parse(open(path, encoding="utf-8").read())
        roots = {name.split(".")[0] for name in imported_modules(tree)}
        assert not roots & {"pymongo", "bson", "eventlet"}, (service, roots)


def test_mongo_operators_appear_only_in_stores():
    found = []
    for path in python_files(SERVICES_DIR):
        if is_store(path):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        found += [f"{os.path.relpath(path, ROOT)}:{line}: {value!r}"
                  for line, value in string_literals(tree) if OPERATOR.match(value)]
    assert not found, "Mongo query code belongs in the service's store:\n" + "\n".join(found)


def test_no_query_is_hinted():
    found = []
    for top in ("services", "gateway", "crm_common"):
        for path in python_files(os.path.join(ROOT, top)):
            for number, line in enumerate(open(path, encoding="utf-8"), 1):
                if HINT.search(line.split("#")[0]):
                    found.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert not found, "no hints (crm_common/mongo.py):\n" + "\n".join(found)
