"""WSGI entry point: `gunicorn -c config/gunicorn.conf.py app:app`."""

import sys

from dotenv import load_dotenv

from altus4 import create_app
from altus4.config import ConfigError

load_dotenv(override=False)  # a .env file fills in what the environment does not set
try:
    app = create_app()
except ConfigError as exc:  # fail fast, naming the setting, instead of a traceback per worker
    print(f"altus4: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(4) from None  # gunicorn's APP_LOAD_ERROR: the master stops instead of respawning workers
