"""Test run: fast hashing, in-memory mail, eager tasks unless a test asks for a worker."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = "test-only-secret-key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests that need a real worker switch eager mode off themselves.
CELERY_TASK_ALWAYS_EAGER = True
# The strict mode of CI: tests that need PostgreSQL, Redis or a browser fail
# instead of skipping.
STRICT_SERVICES = env.bool("STRICT_SERVICES", default=False)
