"""WSGI entry point: `gunicorn -c config/gunicorn.conf.py app:app`."""

from dotenv import load_dotenv

from altus4 import create_app

load_dotenv(override=False)  # a .env file fills in what the environment does not set
app = create_app()
