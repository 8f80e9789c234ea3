"""gunicorn entrypoint: `gunicorn -c gateway/gunicorn.conf.py gateway.wsgi:app`."""
import gc

from gateway import auth
from gateway.app import create_app

app = create_app()
auth.start_background(app)  # indexes, first admin, user_upserted replay

# what the app loaded lives as long as the worker: keep it out of every full collection
gc.freeze()
