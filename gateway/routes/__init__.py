"""One module per resource; each adds its routes to the shared `api`. Every module in this
package is loaded, so a new resource is a new file here."""
import pkgutil

from gateway.api import Api

api = Api()

ROUTE_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))
