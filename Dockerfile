# Altus 4 API image: gunicorn + gevent workers, non-root, read-only friendly (writes only to /tmp).
FROM python:3.11-slim AS base
# no PROMETHEUS_MULTIPROC_DIR here: gunicorn's master makes one of its own (config/gunicorn.conf.py), and a
# command run in the image (`altus4 index --follow`, `altus4 user:tier`) must not look for one
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 PORT=3000 TRUSTED_PROXIES=1
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY pyproject.toml README.md app.py ./
COPY altus4 ./altus4
COPY config/gunicorn.conf.py config/docker-entrypoint.sh ./config/
RUN pip install --no-deps . && useradd --system --uid 10001 altus4 \
    && mkdir -p /var/lib/altus4/vectors && chown altus4 /var/lib/altus4/vectors
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/health', timeout=2)"
# runs the command; on SIGTERM keeps serving SHUTDOWN_DELAY seconds first (see the script)
ENTRYPOINT ["/app/config/docker-entrypoint.sh"]
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "app:app"]
