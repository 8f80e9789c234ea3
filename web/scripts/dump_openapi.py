"""Print the gateway's OpenAPI document without a running stack: the route table and its
schemas, exactly what GET /api/v1/openapi.json serves (gateway/openapi.py)."""
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from gateway.app import OPS_PATHS  # noqa: E402
from gateway.openapi import build_spec  # noqa: E402
from gateway.routes import ROUTE_MODULES, api  # noqa: E402

for name in ROUTE_MODULES:
    importlib.import_module(f"gateway.routes.{name}")
json.dump(build_spec(api, OPS_PATHS), sys.stdout, indent=1, sort_keys=True)
