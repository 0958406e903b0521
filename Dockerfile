# billables: one image for every process. `docker run IMAGE web|worker|release` (default: web).
#   release  migrations (under a lock) and schedules; run once per deploy, before web/worker
#   web      gunicorn on $PORT (8000), static files served by WhiteNoise
#   worker   the django-q2 cluster (several may run, on several machines)
# Configuration comes from the environment only: docs/deployment.md lists every variable.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-compile -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .

# Static files are collected into the image (WhiteNoise serves them); no secret or database
# is needed for that, so the build never sees production configuration.
RUN python manage.py collectstatic --no-input -v 0 \
    && chmod +x deploy/entrypoint.sh \
    && useradd --system --uid 10001 --no-create-home --home-dir /app billables

USER billables
EXPOSE 8000

# For the web process; a worker container should disable it (compose: `healthcheck: disable`).
# /healthz is answered whatever the Host header and without the HTTPS redirect.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"

ENTRYPOINT ["deploy/entrypoint.sh"]
CMD ["web"]
