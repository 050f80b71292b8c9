"""Commands the Rust Django-layout tests run in the Django project, against
eventsourcing_django's tables. Every command prints one JSON document.

    register NAME OWNER [TRICK...]   a new dog; prints its id
    add-trick ID TRICK               a trick for a dog
    get ID...                        the dogs, as the Django side sees them
    log                              the TrainingSchool notification log
    count TRICK...                   the counts Counters holds
    tracked                          Counters' position in TrainingSchool's log
    register-many N PREFIX           N dogs, one save each; prints the ids
"""

import json
import os
import sys
from uuid import UUID

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annals_django.settings")
import django  # noqa: E402

django.setup()

from dogschool import Counters, TrainingSchool  # noqa: E402


def main(command: str, *args: str) -> object:
    school = TrainingSchool()
    if command == "register":
        name, owner, *tricks = args
        dog_id = school.register(name, UUID(owner))
        for trick in tricks:
            school.add_trick(dog_id, trick)
        return str(dog_id)
    if command == "add-trick":
        school.add_trick(UUID(args[0]), args[1])
        return None
    if command == "get":
        return {dog_id: school.get_dog(UUID(dog_id)) for dog_id in args}
    if command == "log":
        items = school.recorder.select_notifications(start=1, limit=10_000)
        return [
            [n.id, n.topic, str(n.originator_id), n.originator_version]
            for n in items
        ]
    if command == "count":
        counters = Counters()
        return {trick: counters.count(trick) for trick in args}
    if command == "tracked":
        return Counters().recorder.max_tracking_id(school.name)
    if command == "register-many":
        count, prefix = int(args[0]), args[1]
        owner = UUID(int=7)
        return [str(school.register(f"{prefix}{i}", owner)) for i in range(count)]
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
