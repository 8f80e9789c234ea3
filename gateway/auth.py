"""Sign-in, identity and authorization of every /api/v1 request, and the audit of writes.

`authenticate()` runs before every /api/v1 request: it resolves `Authorization: Bearer
<JWT>` or `X-API-Key`, loads the user (a disabled user is refused, whatever the token
says), counts the request against the caller's rate limit and sets `g.identity`, which
travels to every service in the RPC context (gateway.api.caller_context).

The resolved identity of a token / key is cached in the worker for CRM_AUTH_CACHE_TTL_S
seconds (`IdentityCache`), stamped with the store's auth epoch: any change to a user or an
API key made through the gateway bumps it, which drops every cached identity at once in
every worker of this host and within the sync interval (~0.5 s) in other gateway replicas;
the TTL bounds everything else (e.g. a user edited directly in the database).

`authorize(route)` runs per route with its declaration: the route's `permission` is looked
up in the permission matrix (gateway/permissions.py, the one table of who may do what):
the caller's role must have a cell there, an API key the permission's key scope; `public`
routes skip sign-in.
"""
import hashlib
import logging
import secrets
import threading
import time

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from pymongo.errors import PyMongoError

from crm_common.config import get_settings
from crm_common.errors import CrmError, Forbidden
from crm_common.messaging.events import envelope
from crm_common.messaging.outbox import Outbox
from crm_common.timeutil import utcnow
from gateway import idempotency, lists, permissions, roles, security
from contracts.gateway import UserOut
from gateway.store import GatewayStore

log = logging.getLogger("gateway.auth")

SYSTEM_IDENTITY = {"kind": "public", "user_id": None, "role": None, "team": None,
                   "team_members": [], "scopes": []}
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
PUBLIC_ENDPOINTS = {"openapi"}
ALGORITHM = "HS256"
# user fields other services keep copies of (docs/events.md, user_upserted)
ANNOUNCED = ("id", "email", "name", "role", "team", "manager_id", "active", "extension",
             "phone", "telegram_chat_id", "language", "timezone")

# argon2id with the library's recommended parameters unless CRM_PASSWORD_HASH_* say otherwise
# (the test stack: a cheap hash, as its hundreds of sign-ins are not about the cost);
# hashes of other parameters still verify and are rehashed at the next sign-in
_TIME_COST, _MEMORY_KIB, _PARALLELISM = get_settings().gateway.password_hash_cost
hasher = PasswordHasher(time_cost=_TIME_COST, memory_cost=_MEMORY_KIB, parallelism=_PARALLELISM)
_DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))
_user_out = UserOut()


class Unauthenticated(CrmError):
    code, status = "unauthenticated", 401


class GatewayDatabaseUnavailable(CrmError):
    code, status = "service_unavailable", 503


# each argon2 run takes 64 MiB and ~50 ms of a core: a few at a time per process, so a
# burst of sign-ins queues instead of exhausting memory
_HASH_SLOTS = threading.BoundedSemaphore(2)


def hash_password(password):
    with _HASH_SLOTS:
        return hasher.hash(password)


def verify_password(password_hash, password):
    try:
        with _HASH_SLOTS:
            return hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def hash_api_key(key):
    # keys are 256-bit random: a fast hash is enough (no dictionary to guess from)
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key():
    return "crm_" + secrets.token_urlsafe(32)


class IdentityCache:
    """token / key hash -> identity, for `ttl_s` seconds at most, while the auth epoch it
    was resolved under is still the current one."""

    def __init__(self, ttl_s, epoch, max_entries=20000):
        self.ttl_s = ttl_s
        self.epoch = epoch
        self.max_entries = max_entries
        self._entries = {}
        self._lock = threading.Lock()

    def get(self, key):
        if self.ttl_s <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        identity, stamp, until = entry
        if time.monotonic() >= until or stamp != self.epoch.current():
            self._entries.pop(key, None)
            return None
        return identity

    def put(self, key, identity, stamp, valid_s=None):
        """`stamp`: the epoch read BEFORE the database was (so a change in between is seen)."""
        if self.ttl_s <= 0 or stamp[1] is None:  # database epoch unknown: do not cache
            return
        ttl = self.ttl_s if valid_s is None else min(self.ttl_s, valid_s)
        if ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            with self._lock:
                now = time.monotonic()
                for k in [k for k, (_, _, until) in list(self._entries.items()) if until <= now]:
                    self._entries.pop(k, None)
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
        self._entries[key] = (identity, stamp, time.monotonic() + ttl)

    def clear(self):
        self._entries.clear()


def _copy(identity):
    # g.identity is per request: never hand out the cached dict itself
    return {**identity, "team_members": list(identity.get("team_members") or []),
            "scopes": list(identity.get("scopes") or [])}


def dump_user(doc):
    out = _user_out.dump(doc)
    for name in _user_out.fields:
        out.setdefault(name, None)
    out["id"] = doc["_id"]
    return out


class Auth:
    def __init__(self, settings, config=None):
        self.settings = settings
        self.config = config or settings.gateway
        self.store = GatewayStore(settings)
        self._ready = False
        self._lock = threading.Lock()
        self._secret = self.config.jwt_secret or None
        # user_upserted: stored with the user's write, then published (messaging.outbox)
        self.outbox = Outbox(self.store.db, "gateway",
                             settings.events_amqp_uri or settings.amqp_uri, settings)
        self.identities = IdentityCache(self.config.identity_cache_ttl_s, self.store.auth_epoch)
        self._key_touched = {}  # api key id -> monotonic time of this process's last touch

    # start-up: indexes and the first admin, once per process, before the first use
    def ready(self):
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self.store.ensure_indexes()
                    self.outbox.start()  # its index, the relay and the batched deletes
                    self.bootstrap_admin()
                    if self.identities.ttl_s > 0:
                        self.store.auth_epoch.poll()
                        self.store.start_auth_epoch_polling()
                    self._ready = True
        return self.store

    @property
    def secret(self):
        if self._secret is None:
            # dev default: one random secret shared by every worker through the database
            log.warning("CRM_JWT_SECRET is not set: using a generated secret kept in the "
                        "gateway database (set CRM_JWT_SECRET in production)")
            self._secret = self.store.shared_secret("jwt_secret")
        return self._secret

    def bootstrap_admin(self):
        email, password = self.config.admin_email, self.config.admin_password
        if not email or not password:
            log.warning("CRM_ADMIN_EMAIL / CRM_ADMIN_PASSWORD not set: no first admin created")
            return None
        existing = self.store.get_user_by_email(email)
        if existing:
            return existing  # never reset a password on restart
        user = self.store.insert_user_once(new_user_doc(
            {"email": email, "name": "Administrator", "role": "admin",
             "password": password}))
        log.info("first admin is %s", email)
        return user

    # tokens
    def issue_token(self, user, signed_in_at=None):
        """`signed_in_at`: when the session began (a refresh keeps it); no token of a
        session lives past signed_in_at + CRM_SESSION_MAX_S."""
        now = int(time.time())
        signed_in_at = signed_in_at or now
        expires = min(now + self.config.jwt_ttl_s, signed_in_at + self.config.session_max_s)
        claims = {"sub": user["_id"], "role": user["role"], "tv": user.get("token_version", 0),
                  "iat": now, "exp": expires, "auth_time": signed_in_at, "typ": "access"}
        token = jwt.encode(claims, self.secret, algorithm=ALGORITHM)
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": expires - now, "user": dump_user(user)}

    def login(self, email, password, ip):
        store = self.ready()
        email = email.strip().lower()
        subject = f"login:{email}:{ip}"
        window = self.config.login_window_s
        security.check_login_throttle(store, subject, self.config.login_failures_per_window,
                                      window)
        user = store.get_user_by_email(email)
        # verify even for an unknown email, so timing does not tell which emails exist
        if not verify_password(user and user.get("password_hash"), password):
            security.record_login_failure(store, subject, window)
            raise Unauthenticated("Wrong email or password")
        if not user.get("active", True):
            raise Unauthenticated("This account is disabled", {"reason": "account_disabled"})
        changes = {"last_login_at": utcnow()}
        if hasher.check_needs_rehash(user["password_hash"]):
            changes["password_hash"] = hash_password(password)
        user = store.update_user(user["_id"], changes) or user
        g.audit_actor = user
        return self.issue_token(user)

    # identity
    def identify(self, headers):
        key = headers.get("X-API-Key")
        if key:
            return self.key_identity(key.strip())
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.token_identity(token.strip())
        raise Unauthenticated("Sign in: send Authorization: Bearer <token> or X-API-Key")

    def token_identity(self, token):
        store = self.ready()
        cached = self.identities.get(("token", token))
        if cached is not None:
            return _copy(cached)
        stamp = store.auth_epoch.current()  # before reading the user (see IdentityCache.put)
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM],
                                options={"require": ["exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The token has expired: sign in again",
                                  {"reason": "token_expired"})
        except jwt.InvalidTokenError:
            raise Unauthenticated("Invalid token", {"reason": "invalid_token"})
        user = store.get_user(claims["sub"])
        if not user or not user.get("active", True):
            raise Unauthenticated("This account is disabled", {"reason": "account_disabled"})
        if claims.get("tv", 0) != user.get("token_version", 0):
            raise Unauthenticated("The token was revoked: sign in again",
                                  {"reason": "token_revoked"})
        identity = self.user_identity(user)
        # never past the token's own expiry
        self.identities.put(("token", token), identity, stamp,
                            valid_s=claims["exp"] - time.time())
        return _copy(identity)

    def user_identity(self, user):
        grants = role = None
        if roles.is_custom(user["role"]):  # a custom role: its grants (gateway/roles.py)
            role = roles.get_role(self.store, user["role"]) or {}
            grants = role.get("permissions") or {}
        members = (self.store.team_member_ids(user["_id"], user.get("team"))
                   if user["role"] == "manager" or roles.needs_team(grants) else [])
        identity = {"kind": "user", "user_id": user["_id"], "email": user["email"],
                    "role": user["role"], "team": user.get("team"), "team_members": members,
                    "scopes": [], "rate_limit": user.get("rate_limit_per_minute")}
        if grants is not None:
            identity["grants"] = grants
        if role and role.get("fields"):  # field grants (gateway/field_access.py)
            identity["fields"] = role["fields"]
        return identity

    def key_identity(self, key):
        store = self.ready()
        key_hash = hash_api_key(key)
        identity = self.identities.get(("key", key_hash))
        if identity is None:
            stamp = store.auth_epoch.current()  # before reading the key
            doc = store.get_api_key_by_hash(key_hash)
            if not doc:
                raise Unauthenticated("Unknown API key", {"reason": "invalid_api_key"})
            if doc.get("revoked_at"):
                raise Unauthenticated("This API key was revoked", {"reason": "api_key_revoked"})
            last = doc.get("last_used_at")
            if last is not None and doc["_id"] not in self._key_touched:
                # written by another worker less than a minute ago: due a minute after that
                age = max(0.0, (utcnow() - last).total_seconds())
                self._key_touched[doc["_id"]] = time.monotonic() - age
            # an integration acts for the whole company within its scopes (a PBX routes
            # every caller): admin visibility in the services, routes limited by scopes here
            identity = {"kind": "api_key", "user_id": None, "role": "admin", "team": None,
                        "team_members": [], "scopes": list(doc.get("scopes") or []),
                        "api_key_id": doc["_id"], "rate_limit": doc.get("rate_limit_per_minute")}
            self.identities.put(("key", key_hash), identity, stamp)
        self._touch(identity["api_key_id"])
        return _copy(identity)

    def _touch(self, key_id):
        """last_used_at: one write a minute per key and process, not one per request (the
        conditional update keeps it to about one a minute in the database too)."""
        now = time.monotonic()
        last = self._key_touched.get(key_id)
        if last is not None and now - last < 60:
            return
        self._key_touched[key_id] = now
        if len(self._key_touched) > 100000:
            self._key_touched.clear()
        self.store.touch_api_key(key_id, utcnow())

    # events: user_upserted, for the services that keep a copy of the users
    @staticmethod
    def user_event(user, actor_id=None):
        data = {"user": {k: v for k, v in dump_user(user).items() if k in ANNOUNCED},
                "actor_id": actor_id, "ref": {"type": "user", "id": user["_id"]},
                "summary": f"User {user['email']} ({user['role']})"}
        return envelope("gateway", "user_upserted", data)

    def save_user(self, write, *args, **kwargs):
        """`write(*args, **kwargs)` -> the user written (None: nothing matched), run in one
        transaction with its user_upserted, which is published before this returns (or by
        the relay, whatever happens to this process)."""
        actor_id = g.get("identity", {}).get("user_id")
        request_id = g.get("request_id")

        def write_and_announce():
            user = write(*args, **kwargs)
            return user, [self.user_event(user, actor_id)] if user else []
        self.ready()
        return self.outbox.atomic(write_and_announce,
                                  headers={"nameko.request_id": request_id} if request_id else None)

    def announce_all(self, batch=200):
        """Every user announced again (at gateway start): a copy that missed something is
        repaired."""
        count, events = 0, []
        for user in self.store.all_users():
            events.append(self.user_event(user))
            count += 1
            if len(events) >= batch:
                self.outbox.dispatch(events)
                events = []
        self.outbox.dispatch(events)
        log.info("announced %d users", count)


def new_user_doc(data):
    now = utcnow()
    doc = {"email": data["email"].strip().lower(), "name": data["name"], "role": data["role"],
           "team": data.get("team"), "manager_id": data.get("manager_id"),
           "active": data.get("active", True), "token_version": 0,
           "created_at": now, "updated_at": now, "last_login_at": None}
    for key in ("extension", "phone", "telegram_chat_id", "language", "timezone",
                "rate_limit_per_minute"):
        doc[key] = data.get(key)
    doc["password_hash"] = hash_password(data["password"])
    return doc


def current():
    return current_app.extensions["crm.auth"]


# hooks -------------------------------------------------------------------------------

def authenticate():
    g.identity = dict(SYSTEM_IDENTITY)
    if request.method == "OPTIONS" or request.endpoint in PUBLIC_ENDPOINTS:
        return
    from gateway.routes import api
    route = api.route_for(request.endpoint)
    if route is not None and route.public:
        return
    auth = current()
    identity = auth.identify(request.headers)
    g.identity = identity
    if identity["kind"] == "api_key":
        subject, limit = f"key:{identity['api_key_id']}", auth.config.key_rate_per_minute
    else:
        subject, limit = f"user:{identity['user_id']}", auth.config.user_rate_per_minute
    security.check_rate(auth.store, subject, identity.get("rate_limit") or limit)


def authorize(route):
    """Called by every route with its declaration before it runs: the caller's cell of the
    route's permission (gateway/permissions.py) must allow it, else 403."""
    permission = permissions.permission_of(route)
    if permission is None:  # public
        return
    identity = g.get("identity") or SYSTEM_IDENTITY
    if identity.get("kind") == "api_key":
        if not permission.api_key:
            raise Forbidden("API keys cannot call this route",
                            {"permission": permission.name})
        if permission.api_key not in identity["scopes"]:
            raise Forbidden("This API key lacks the scope for this route",
                            {"required_scopes": [permission.api_key],
                             "permission": permission.name})
    elif roles.is_custom(identity.get("role")):
        scope = roles.grant_for(identity, permission, route)
        if scope is None:
            raise Forbidden("Your role cannot do this", {"permission": permission.name,
                                                         "role": identity.get("role")})
        g.route_scope = scope  # the services apply it (crm_common.context.Caller.person_ids)
    elif permission.scope(identity.get("role")) is None:
        raise Forbidden("Your role cannot do this",
                        {"permission": permission.name,
                         "roles": [r for r in permissions.ROLES if permission.scope(r)]})


def record_audit(response):
    """Every successful write through /api/v1: who, when, what, which body keys."""
    if (request.method not in WRITE_METHODS or not request.path.startswith("/api/v1")
            or response.status_code >= 400 or g.get("idempotent_replay")):
        return response
    identity = g.get("identity") or {}
    actor = g.get("audit_actor")
    from gateway.routes import api
    route = api.route_for(request.endpoint)
    if route is not None and not route.audit:
        return response
    view_args = request.view_args or {}
    resource_id = next(iter(view_args.values()), None)
    body = None
    if response.is_json and response.status_code in (200, 201) and (
            resource_id is None or (route is not None and route.tag in lists.RESOURCES)):
        body = response.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        resource_id = body.get("id") if resource_id is None else resource_id
    entry = {"at": utcnow(),
             "actor_id": actor["_id"] if actor else identity.get("user_id"),
             "actor_email": actor["email"] if actor else identity.get("email"),
             "actor_role": actor["role"] if actor else identity.get("role"),
             "api_key_id": identity.get("api_key_id"),
             "method": request.method, "path": request.path[:500],
             "route": route.path if route else None,
             "resource": route.tag if route else None,
             "resource_id": str(resource_id) if resource_id is not None else None,
             "fields": _body_keys(), "status": response.status_code,
             "request_id": g.get("request_id"), "ip": request.remote_addr}
    if body and body.get("updated_at") and body.get("id") == resource_id:
        # the state written: the lists read from the search index show it (gateway/lists.py)
        entry["record_updated_at"] = body["updated_at"]
    try:
        current().store.insert_audit(entry)
    except PyMongoError:
        log.exception("audit entry lost: %s", {k: v for k, v in entry.items() if k != "at"})
    return response


def _body_keys():
    if request.is_json:
        body = request.get_json(silent=True, cache=True)
        return sorted(str(k) for k in body)[:200] if isinstance(body, dict) else []
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return sorted(set(request.form) | set(request.files))[:200]
    return []


def init_app(app, settings):
    """Register the gateway's auth hooks; the database is reached only when first needed."""
    auth = Auth(settings)
    app.extensions["crm.auth"] = auth
    app.after_request(record_audit)

    @app.after_request
    def keep_idempotent_answer(response):
        try:
            return idempotency.finish(response, auth.store)
        except PyMongoError:  # the answer stands; the claim expires after the lock time
            log.exception("could not store the answer of an Idempotency-Key")
            return response

    @app.teardown_request
    def free_idempotency_key(error=None):
        if g.get("idempotency") is not None:
            try:
                idempotency.abandon(auth.store)
            except PyMongoError:  # the claim expires after CRM_IDEMPOTENCY_LOCK_S
                log.exception("could not free an Idempotency-Key")

    @app.after_request
    def security_headers(response):
        return security.add_security_headers(response, auth.config.cors_origins)

    @app.errorhandler(PyMongoError)
    def gateway_database_down(error):
        log.error("gateway database error: %s", error)
        from gateway.api import json_response
        err = GatewayDatabaseUnavailable("The gateway database is unavailable",
                                         {"reason": type(error).__name__})
        return json_response({"error": err.to_dict()}, err.status)

    return auth


def start_background(app, attempts=60):
    """At gateway start: indexes, the first admin, then every user re-announced (one worker
    does it per start, the others see the claim)."""
    auth = app.extensions["crm.auth"]

    def run():
        for _ in range(attempts):
            try:
                auth.ready()
                if auth.store.claim("announce_users", seconds=10):
                    auth.announce_all()
                return
            except Exception:  # noqa: BLE001 - database or broker not up yet: retry
                log.warning("gateway start-up tasks failed; retrying", exc_info=True)
                time.sleep(1)

    threading.Thread(target=run, name="gateway-startup", daemon=True).start()

