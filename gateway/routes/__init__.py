"""One module per resource; each adds its routes to the shared `api`. To add a resource,
write a module here and name it in ROUTE_MODULES."""
from gateway.api import Api

api = Api()

ROUTE_MODULES = ("contacts", "companies")
