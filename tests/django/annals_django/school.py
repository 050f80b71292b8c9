"""The project's event-sourced system: the TrainingSchool and the Counters
process application that follows it, run by the runner `manage.py
sync_followers` finds."""

from uuid import UUID

import eventsourcing.system
from django.apps import AppConfig


class SchoolConfig(AppConfig):
    name = "annals_django"
    label = "school"
    es_runner: eventsourcing.system.Runner[UUID]

    def ready(self) -> None:
        from dogschool import Counters, TrainingSchool

        self.es_runner = eventsourcing.system.SingleThreadedRunner(
            eventsourcing.system.System([[TrainingSchool, Counters]])
        )
        self.es_runner.start()
