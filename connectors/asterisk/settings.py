"""The connector's AMI settings: the environment's (TELEPHONY_AMI_*, TELEPHONY_ORIGINATE_SECRET)
overridden by what an admin stored through the telephony settings API, polled with the
connector's API key (GET /api/v1/telephony/connector-settings, scope telephony-connector:read).
While the API is unreachable or the key lacks the scope, the last values stay."""
import logging

import requests

log = logging.getLogger("connectors.asterisk")
SETTINGS_PATH = "/api/v1/telephony/connector-settings"
FIELDS = ("ami_host", "ami_port", "ami_username", "ami_secret", "ami_timeout_s",
          "originate_secret")
LOGIN = ("ami_host", "ami_port", "ami_username", "ami_secret")


class SettingsWatcher:
    def __init__(self, gateway_url, api_key, env, timeout_s=5.0, session=None):
        self.url = gateway_url.rstrip("/") + SETTINGS_PATH
        self.headers = {"X-API-Key": api_key}
        self.env = {name: getattr(env, name) for name in FIELDS}
        self.values = dict(self.env)
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.version, self._complained = None, None

    def poll(self):
        """Reads the API's overrides; True when the AMI login (host, port, user, secret)
        changed."""
        try:
            answer = self.session.get(self.url, headers=self.headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            self._complain(f"unreachable ({exc.__class__.__name__})")
            return False
        if answer.status_code != 200:
            self._complain(f"answered {answer.status_code} (the key needs scope "
                           "telephony-connector:read)" if answer.status_code == 403 else
                           f"answered {answer.status_code}")
            return False
        self._complained = None
        body = answer.json()
        overrides = {k: v for k, v in (body.get("ami") or {}).items() if k in FIELDS}
        values = {**self.env, **{k: v for k, v in overrides.items() if v not in (None, "")}}
        changed = any(values[k] != self.values[k] for k in LOGIN)
        if values != self.values:
            log.info("AMI settings version %s from the API%s", body.get("version"),
                     ": logging in again" if changed else "")
        self.values, self.version = values, body.get("version")
        return changed

    def _complain(self, what):
        if self._complained != what:  # once per kind of failure, not every poll
            log.warning("telephony settings API %s: AMI settings unchanged", what)
            self._complained = what
