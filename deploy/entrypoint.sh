#!/bin/sh
# Container entry point: the process names of the Procfile, or any command (e.g. a shell or
# `python manage.py export_client_data ...`).
set -e
case "$1" in
    web) exec gunicorn -c deploy/gunicorn.conf.py ;;
    worker) exec python manage.py qcluster ;;
    release) exec python manage.py release --no-collectstatic ;;
    *) exec "$@" ;;
esac
