"""The interop tests' commands (tests/python/interop.py), run in the Django
project: the same TrainingSchool and Counters, on eventsourcing_django's
tables (PERSISTENCE_MODULE=eventsourcing_django). Every command prints one
JSON document."""

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annals_django.settings")
import django  # noqa: E402

# The settings put tests/python on the path.
django.setup()

from interop import main  # noqa: E402

if __name__ == "__main__":
    json.dump(main(*sys.argv[1:]), sys.stdout)
