"""Stream tickets: what a browser's EventSource opens the live stream with (served by the
stream process, gateway/stream/; docs in its app.py)."""
from flask import current_app, g

from contracts.gateway import StreamTicketOut
from crm_common.config import get_settings
from gateway import auth
from gateway.routes import api
from gateway.stream import tickets

TAG = "stream"
_SETTINGS = get_settings().stream


@api.route("/stream/tickets", "POST", "A single-use ticket (60 s) to open the live stream "
           "with: GET /api/v1/stream?ticket=… (Server-Sent Events; a long-lived token never "
           "goes in a URL)", TAG, response=StreamTicketOut, status=201,
           errors=(401, 403, 429, 503), permission="stream:self", audit=False)
def create_ticket(body, params):
    store = auth.current().ready()
    if not current_app.extensions.get("crm.stream_index"):
        tickets.ensure_index(store.db)
        current_app.extensions["crm.stream_index"] = True
    issued = tickets.issue(store.db, g.identity["user_id"], _SETTINGS.ticket_ttl_s)
    return {**issued, "url": f"/api/v1/stream?ticket={issued['ticket']}"}
