"""Container probe: `python -m crm_common.healthcheck SERVICE [--ready]`.

Exit 0 when the service's heartbeat file is fresh (liveness) and, with --ready, when its
last database ping succeeded too. Works without the broker: it checks this container only.
"""
import json
import sys
import time

from crm_common.config import load_settings
from crm_common.health import HEARTBEAT_SECONDS, heartbeat_path

STALE_AFTER = HEARTBEAT_SECONDS * 4


def check(service, ready=False, now=None):
    try:
        with open(heartbeat_path(service, load_settings())) as handle:
            beat = json.load(handle)
    except (OSError, ValueError) as exc:
        return False, f"no heartbeat: {exc}"
    age = (now or time.time()) - beat["at"]
    if age > STALE_AFTER:
        return False, f"heartbeat {age:.0f} s old"
    if ready and not beat.get("database"):
        return False, "database not answering"
    return True, f"ok (heartbeat {age:.1f} s old)"


def main(argv):
    if not argv or argv[0].startswith("-"):
        print("usage: python -m crm_common.healthcheck SERVICE [--ready]")
        return 2
    ok, message = check(argv[0], ready="--ready" in argv)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
