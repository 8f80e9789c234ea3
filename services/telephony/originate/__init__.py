"""Click-to-call adapters: each asks a PBX to ring the agent's phone and then dial the
customer. `request(settings, job)` sends the request and returns what the PBX said at once
({"status": "queued"|"requested", ...}); an adapter whose PBX reports the outcome later
also has `follow(...)`, run in the background, returning the final {"status", "reason"}."""
from services.telephony.originate import ami, connector, http_callback

ADAPTERS = {"ami": ami, "connector": connector, "http": http_callback}
