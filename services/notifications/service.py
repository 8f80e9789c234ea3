"""Notifications service entrypoints: thin. Events become messages in fanout.py, the
outbox is sent by worker.py, the API is operations.py, storage is store.py."""
from datetime import date, timedelta

from nameko.timer import timer

from contracts.notifications import DIGEST_REPORTS
from crm_common.config import get_settings
from crm_common.context import CallerContext, user_context
from crm_common.errors import EXPECTED, Forbidden, NotFound
from crm_common.messaging.bindings import DemandBindings, demand_bound_handler
from crm_common.messaging.events import envelope, reliable_handler
from crm_common.health import HealthEntrypoints
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ActingRpc, ServiceRpc, rpc
from crm_common.timeutil import parse_iso, to_iso, utcnow
from services.notifications.channels.inapp import inbox_created
from services.notifications.fanout import Fanout
from services.notifications.operations import Notifications
from services.notifications import digests
from services.notifications.dependencies import Pipeline
from services.notifications.rules import ALWAYS_BOUND, HANDLED_EVENTS, webhook_type_keys
from services.notifications.store import NotificationsStore
from services.notifications.worker import Worker

SETTINGS = get_settings().notifications


def _source_handler(source, event_types):
    @demand_bound_handler(source, event_types, ALWAYS_BOUND.get(source, ()))
    def handle(self, event):
        if event["type"] in event_types:
            fanout = Fanout(self.store, self.clock(), self.pipeline)
            fanout.handle(event)
            for entry in fanout.inbox:  # the live stream's `notification`
                self.dispatch("notification_created", envelope(
                    self.name, "notification_created", inbox_created(entry),
                    event_id=f"inbox:{entry['key']}"))

    handle.__name__ = f"on_{source}_events"
    return handle


class NotificationsService(HealthEntrypoints):
    name = "notifications"

    store = MongoStore(NotificationsStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    contacts_rpc = ServiceRpc("contacts")
    # a digest's reports, read as its subscriber (their visibility)
    acting = ActingRpc(size=4)
    # group commit of the handlers' writes, and the sender of what they claimed
    pipeline = Pipeline(SETTINGS)
    # the webhook-only event types are routed here once an active webhook subscribes
    bindings = DemandBindings(lambda store: webhook_type_keys(store.subscribed_types()))

    def clock(self):
        """utcnow, shifted by the test clock's offset when CRM_TEST_CLOCK=1 (tests only)."""
        if not SETTINGS.test_clock:
            return utcnow
        offset = timedelta(seconds=self.store.clock_offset())
        return lambda: utcnow() + offset

    @property
    def notifications(self):
        return Notifications(self.store, self.caller, SETTINGS, self.clock())

    # the people's copy of users, kept from the gateway's announcements
    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The people's copy: addresses, language, time zone, manager, active."""
        self.store.upsert_user(event["data"]["user"], parse_iso(event["occurred_at"]))

    # one reliable (dead-lettering) queue per source, bound to the events that reach a
    # person, and to those a webhook subscribes to
    for _source, _types in HANDLED_EVENTS.items():
        locals()[f"on_{_source}_events"] = _source_handler(_source, _types)
    del _source, _types

    # the outbox: what is due in the database (retries, held by quiet hours, messages to
    # contacts, stored while the pipeline was full, a crashed replica's after its lease)
    @timer(interval=SETTINGS.poll_s)
    def send_due(self):
        """The pipeline's claimed deliveries, then those due in the database
        (dependencies.Pipeline.send_due), then the timer ticks again."""
        worker = Worker(self.store, SETTINGS, self.clock(), self.contacts_rpc.get_contact,
                        record=self._record_outcomes)
        self.pipeline.send_due(worker)

    def _record_outcomes(self, outcomes, events):
        """A batch's outcomes and their delivered/failed events in one transaction; the
        events published (and deleted in batches) in the background."""
        self._announce_after_reply(lambda: (self.store.finish(outcomes), events))

    @timer(interval=600)
    def daily_birthdays(self):
        today = self.clock()().date()
        key = f"birthdays:{today.isoformat()}"
        if self.store.claim_job(key, utcnow()):
            try:
                self._birthdays(today)
            except Exception:
                self.store.release_job(key)  # try again at the next tick
                raise

    @timer(interval=60)
    def report_digests(self):
        self._digests(self.clock()())

    def _digests(self, now, user_id=None):
        """The digests due at `now` (of one user, or all), each once per period: claimed
        as a job, and given back when an owner did not answer (tried again a minute
        later, within its window). The users they went to."""
        sent = []
        for subscriber, prefs in self.store.digest_subscribers():
            if user_id and subscriber != user_id:
                continue
            user = self.store.get_user(subscriber)
            if not user or user.get("active") is False:
                continue
            period = digests.due_period(now, prefs["digest"],
                                        prefs.get("timezone") or user.get("timezone"))
            if period is None:
                continue
            key = f"digest:{subscriber}:{period[0]}"
            if not self.store.claim_job(key, utcnow()):
                continue
            try:
                self._send_digest(subscriber, user, prefs, period)
            except Exception:
                self.store.release_job(key)
                raise
            sent.append(subscriber)
        return sent

    def _send_digest(self, user_id, user_doc, prefs, period, repeat=None):
        key, start, end = period
        user = {**user_doc, "id": user_id}
        digest = {"frequency": "daily", "reports": list(DIGEST_REPORTS),
                  **(prefs or {}).get("digest", {})}
        context = user_context(user, self.store.team_member_ids(user.get("team")))
        data = digests.gather(self.acting.as_user(context),
                              digests.reports_of(user, digest["reports"]), start, end)
        names = {uid: (doc or {}).get("name") for uid, doc in self.store.get_users(
            {r.get("key") or r.get("assignee_id") for report in data.values()
             if isinstance(report, dict)  # not the funnels' list: stages, no people
             for r in report.get("rows") or report.get("items") or []} - {None}).items()}
        content = {"frequency": digest["frequency"], "from": to_iso(start), "to": to_iso(end),
                   "from_day": start.date().isoformat(),
                   "to_day": (end - timedelta(seconds=1)).date().isoformat(),
                   "rows": digests.readable(data, names)}
        channels = Fanout(self.store, self.clock()).digest(user_id, user_doc, prefs, key,
                                                          content, repeat)
        return {"period": f"{content['from']}/{content['to']}", "reports": sorted(data),
                "channels": channels}

    def _birthdays(self, day):
        return Fanout(self.store, self.clock()).birthday_run(day, self.contacts_rpc.birthdays)

    # API
    @rpc(expected_exceptions=EXPECTED)
    def list_notifications(self, params):
        return self.notifications.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def unread_count(self, params):
        return self.notifications.unread_count(params)

    @rpc(expected_exceptions=EXPECTED)
    def mark_read(self, notification_id, params):
        return self.notifications.mark_read(notification_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def mark_all_read(self, params):
        return self.notifications.mark_all_read(params)

    @rpc(expected_exceptions=EXPECTED)
    def get_preferences(self, params):
        return self.notifications.get_preferences(params)

    @rpc(expected_exceptions=EXPECTED)
    def set_preferences(self, payload, params):
        return self.notifications.set_preferences(payload, params)

    @rpc(expected_exceptions=EXPECTED)
    def create_webhook(self, payload):
        hook = self._announce(self.notifications.create_webhook, payload)
        self.bindings.refresh(self.store)   # before the answer: its next events reach it
        return hook

    @rpc(expected_exceptions=EXPECTED)
    def get_webhook(self, webhook_id):
        return self.notifications.get_webhook(webhook_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_webhook(self, webhook_id, payload):
        hook = self._announce(self.notifications.update_webhook, webhook_id, payload)
        self.bindings.refresh(self.store)
        return hook

    @rpc(expected_exceptions=EXPECTED)
    def delete_webhook(self, webhook_id):
        return self._announce(self.notifications.delete_webhook, webhook_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_webhooks(self, params):
        return self.notifications.list_webhooks(params)

    @rpc(expected_exceptions=EXPECTED)
    def list_deliveries(self, webhook_id, params):
        return self.notifications.list_deliveries(webhook_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def redeliver(self, webhook_id, delivery_id):
        return self._announce(self.notifications.redeliver, webhook_id, delivery_id)

    # ops
    @rpc(expected_exceptions=EXPECTED)
    def run_birthdays(self, day=None):
        """The daily birthday run for one day (default today); safe to repeat."""
        return self._birthdays(date.fromisoformat(day) if day else self.clock()().date())

    @rpc(expected_exceptions=EXPECTED)
    def run_digests(self, now=None, user_id=None):
        """Tests and ops: the digests due at `now` (default: now), as the timer sends them."""
        return self._digests(parse_iso(now) if now else self.clock()(), user_id)

    @rpc(expected_exceptions=EXPECTED)
    def send_my_digest(self, params):
        """The caller's digest now, for the period it would cover (a preview by e-mail)."""
        user_id = self.notifications.own_user(params)
        user = self.store.get_user(user_id)
        if not user:
            raise NotFound("This user is not known to notifications yet; try again shortly")
        prefs = self.store.get_preferences(user_id) or {}
        digest = {"frequency": "daily", "hour": 8, **(prefs.get("digest") or {})}
        if digest["frequency"] == "off":
            digest["frequency"] = "daily"
        now = self.clock()()
        period = digests.latest_period(now, digest, prefs.get("timezone") or user.get("timezone"))
        return self._send_digest(user_id, user, {**prefs, "digest": digest}, period,
                                 repeat=to_iso(now))

    @rpc(expected_exceptions=EXPECTED)
    def birthday_greeting_owners(self):
        """The users who had their contacts greeted on their birthday (the old preference):
        automation copies them into its birthday rule once."""
        return self.store.birthday_greeting_owners()

    @rpc(expected_exceptions=EXPECTED)
    def deliveries_of_event(self, event_id):
        return [{**{k: v for k, v in d.items() if k not in ("html", "body", "text")},
                 "id": d["_id"], **{k: to_iso(d.get(k)) for k in
                                    ("due_at", "next_attempt_at", "created_at", "updated_at",
                                     "delivered_at", "failed_at")}}
                for d in self.store.deliveries_of_event(event_id)]

    @rpc(expected_exceptions=EXPECTED)
    def set_test_clock(self, now=None):
        """Tests only (CRM_TEST_CLOCK=1): pretend it is `now` (ISO) from here on; None resets."""
        if not SETTINGS.test_clock:
            raise Forbidden("The test clock is disabled", {})
        offset = (parse_iso(now) - utcnow()).total_seconds() if now else 0.0
        self.store.set_clock_offset(offset)
        return {"offset_s": offset}
