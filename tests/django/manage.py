#!/usr/bin/env python
"""The Django project of annals' Django-layout tests: `python manage.py
migrate eventsourcing_django` makes the tables, `python manage.py
sync_followers` brings the Python followers up to date."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annals_django.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
