"""`python -m connectors.asterisk`: AMI events -> the gateway, until SIGTERM/SIGINT."""
import json
import logging
import os
import signal
import sys
import threading
import time

from connectors.asterisk.ami import AmiClient, AmiError
from connectors.asterisk.forwarder import BACKOFF_START_S, Forwarder
from connectors.asterisk.originate import Originator, serve
from connectors.asterisk.settings import SettingsWatcher
from contracts.telephony_webhooks import connector_key
from crm_common.config import get_settings
from crm_common.health import HEARTBEAT_SECONDS, heartbeat_path

COMPONENT = "ami-connector"

log = logging.getLogger("connectors.asterisk")


def follow(client, forwarder, stopped, backoff_max_s):
    """Reads AMI events into the forwarder, reconnecting with capped exponential backoff."""
    backoff = BACKOFF_START_S
    while not stopped.is_set():
        try:
            client.connect()
            backoff = BACKOFF_START_S
            for event in client.events():
                forwarder.put(event)
                if stopped.is_set():
                    break
        except (AmiError, OSError) as exc:
            log.warning("AMI at %s:%s: %s; reconnecting in %.1f s", client.host, client.port,
                        exc, backoff)
            client.close()
            stopped.wait(backoff)
            backoff = min(backoff * 2, backoff_max_s)
    client.close()


def watch(watcher, client, stopped, poll_s):
    """Applies the AMI settings changed through the API: a new login reconnects."""
    while True:
        if watcher.poll():
            values = watcher.values
            client.host, client.port = values["ami_host"], int(values["ami_port"])
            client.username, client.secret = values["ami_username"], values["ami_secret"]
            client.close()  # the reader logs in again with these
        client.timeout = float(watcher.values["ami_timeout_s"])
        if stopped.wait(poll_s):
            return


def beat(path, client, forwarder):
    """The container probe's file (crm_common.healthcheck ami-connector [--ready]): alive
    while this is fresh, ready while logged in to AMI."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump({"at": time.time(), "database": client.logged_in,
                   "pending": forwarder.pending()}, handle)
    os.replace(temporary, path)


def main():
    settings = get_settings()
    telephony, own = settings.telephony, settings.ami_connector
    logging.basicConfig(level=getattr(logging, "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not own.api_key:
        log.error("CRM_AMI_CONNECTOR_API_KEY is not set (an API key with scope telephony:write)")
        return 2
    forwarder = Forwarder(own.gateway_url, own.api_key, own.spool_path, own.buffer_max,
                          own.backoff_max_s, own.post_timeout_s)
    client = AmiClient(telephony.ami_host, telephony.ami_port, telephony.ami_username,
                       telephony.ami_secret, timeout=telephony.ami_timeout_s)
    stopped = threading.Event()
    watcher = SettingsWatcher(own.gateway_url, own.api_key, telephony, own.post_timeout_s)
    watcher.poll()  # the API's values from the first login on, when it answers
    client.host, client.port = watcher.values["ami_host"], int(watcher.values["ami_port"])
    client.username, client.secret = watcher.values["ami_username"], watcher.values["ami_secret"]
    server = None
    if own.listen:
        server = serve(own.listen, Originator(client), lambda: connector_key(
            watcher.values["originate_secret"], watcher.values["ami_secret"]))
        log.info("click-to-call endpoint on %s", own.listen)

    def stop(signum, frame):
        stopped.set()
        forwarder.stop()
        client.close()  # wakes the blocked read

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poster = threading.Thread(target=forwarder.run, name="poster", daemon=True)
    poster.start()
    reader = threading.Thread(target=follow, name="ami",
                              args=(client, forwarder, stopped, own.backoff_max_s), daemon=True)
    reader.start()
    threading.Thread(target=watch, name="settings", daemon=True,
                     args=(watcher, client, stopped, own.settings_poll_s)).start()
    log.info("forwarding AMI events from %s:%s to %s", client.host, client.port,
             forwarder.url)
    path, last = heartbeat_path(COMPONENT, settings), 0.0
    while not stopped.wait(0.5):
        if time.monotonic() - last >= HEARTBEAT_SECONDS:
            last = time.monotonic()
            try:
                beat(path, client, forwarder)
            except OSError as exc:
                log.warning("heartbeat not written to %s: %s", path, exc)
    if server is not None:
        server.shutdown()
    poster.join(own.post_timeout_s + 1)
    forwarder.save()
    log.info("stopped: %d posted, %d refused, %d pending in %s", forwarder.posted,
             forwarder.dropped, forwarder.pending(), own.spool_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
