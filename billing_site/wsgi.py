import os

from django.core.wsgi import get_wsgi_application

from billing_site.checks import refuse_public_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
application = get_wsgi_application()
# Never serve on a missing or public signing key with DEBUG off (issue 14; checks.py).
refuse_public_secret_key()
