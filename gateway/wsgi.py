"""gunicorn entrypoint: `gunicorn -c gateway/gunicorn.conf.py gateway.wsgi:app`."""
from gateway import auth
from gateway.app import create_app

app = create_app()
auth.start_background(app)  # indexes, first admin, user_upserted replay
