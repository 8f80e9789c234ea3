"""The one place authentication plugs in (users, tokens and API keys: the auth issue).

`authenticate()` runs before every /api/v1 request and sets `g.identity`, which travels to
every service in the RPC context. Until sign-in exists every caller acts as a system admin.
"""
from flask import g

SYSTEM_IDENTITY = {"user_id": None, "role": "admin", "team": None}


def authenticate():
    g.identity = dict(SYSTEM_IDENTITY)


def authorize(route):
    """Called by every route with its declaration (public, scopes) before it runs."""
