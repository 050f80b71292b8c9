"""Settings of the minimal Django project annals shares a database with.

The database comes from the environment: ANNALS_DJANGO_DB is sqlite,
postgres or mysql; DJANGO_DB_NAME, DJANGO_DB_HOST, DJANGO_DB_PORT,
DJANGO_DB_USER and DJANGO_DB_PASSWORD say where (on PostgreSQL,
DJANGO_DB_SCHEMA is the schema of the tables). The event-sourced
applications take their settings from the environment as any Python
eventsourcing application does, with PERSISTENCE_MODULE=eventsourcing_django.
"""

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# The Python TrainingSchool and Counters of the interop tests.
sys.path.insert(0, str(BASE_DIR.parent / "python"))

SECRET_KEY = "annals-tests-only"  # nosec: a test project, never served
DEBUG = False
ALLOWED_HOSTS: list = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "eventsourcing_django",
    "annals_django.school.SchoolConfig",
]

_engine = os.environ.get("ANNALS_DJANGO_DB", "sqlite")
_db = {
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_NAME", str(BASE_DIR / "db.sqlite3")),
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DJANGO_DB_NAME", "test"),
        "HOST": os.environ.get("DJANGO_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DJANGO_DB_PORT", "5432"),
        "USER": os.environ.get("DJANGO_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("DJANGO_DB_PASSWORD", ""),
    },
    "mysql": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": os.environ.get("DJANGO_DB_NAME", "test"),
        "HOST": os.environ.get("DJANGO_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DJANGO_DB_PORT", "3306"),
        "USER": os.environ.get("DJANGO_DB_USER", "root"),
        "PASSWORD": os.environ.get("DJANGO_DB_PASSWORD", ""),
    },
}[_engine]
if _engine == "postgres" and os.environ.get("DJANGO_DB_SCHEMA"):
    _db["OPTIONS"] = {"options": f"-c search_path={os.environ['DJANGO_DB_SCHEMA']}"}
DATABASES = {"default": _db}
