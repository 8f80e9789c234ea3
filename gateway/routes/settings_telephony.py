"""Telephony settings (admin only): provider credentials, own numbers, lead owner policy,
click-to-call adapter, who calls back missed calls. The environment's values are the
defaults; secrets are write-only. A change takes effect within seconds on every replica."""
from contracts import telephony as s
from gateway.calls import call
from gateway.routes import api

TAG = "settings"


@api.route("/settings/telephony", "GET", "The telephony settings in force (secrets: only "
           "whether each is set, and where from)", TAG, response=s.TelephonySettingsOut,
           errors=(503, 504), permission="telephony-settings:manage")
def get_telephony_settings(body, params):
    return call("telephony", "get_settings")


@api.route("/settings/telephony", "PATCH", "Change telephony settings; null returns one to "
           "the environment's value; secrets are stored encrypted and never returned", TAG,
           body=s.TelephonySettingsIn, response=s.TelephonySettingsOut,
           errors=(400, 413, 415, 422, 503, 504), permission="telephony-settings:manage")
def update_telephony_settings(body, params):
    return call("telephony", "update_settings", body)


@api.route("/settings/telephony/test", "POST", "Test one provider's settings (twilio, "
           "zadarma: credentials present; ami: connect and log in; http: connect); the "
           "answer says which check failed", TAG, body=s.TelephonyTestIn,
           response=s.TelephonyTestOut, errors=(400, 413, 415, 422, 503, 504),
           permission="telephony-settings:manage")
def test_telephony_settings(body, params):
    return call("telephony", "test_settings", body)
