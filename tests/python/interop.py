"""Commands the Rust interop tests run against the real Python library.
Settings come from the environment, as for any Python eventsourcing
application. Every command prints one JSON document on stdout.

    register NAME OWNER [TRICK...]   a new dog; prints its id
    add-trick ID TRICK               a trick for a dog
    get ID...                        the dogs, as the Python side sees them
    log                              the TrainingSchool notification log
    follow                           Counters pulls and processes the log
    count TRICK...                   the counts Counters holds
    tracked                          Counters' position in TrainingSchool's log
    register-many N PREFIX           N dogs, one save each; prints the ids
    tag NAME USES                    a new tag (string id), used USES times
    use-tag ID                       one more use of a tag
    get-tag ID...                    the tags, as the Python side sees them
    snapshot-topics ID               the topics of a stream's stored snapshots
"""

import json
import sys
from uuid import UUID

from dogschool import Counters, Tag, Tags, TrainingSchool


def main(command: str, *args: str) -> object:
    if command == "register":
        school = TrainingSchool()
        name, owner, *tricks = args
        dog_id = school.register(name, UUID(owner))
        for trick in tricks:
            school.add_trick(dog_id, trick)
        return str(dog_id)
    if command == "add-trick":
        TrainingSchool().add_trick(UUID(args[0]), args[1])
        return None
    if command == "get":
        school = TrainingSchool()
        return {dog_id: school.get_dog(UUID(dog_id)) for dog_id in args}
    if command == "log":
        school = TrainingSchool()
        # The recorder, not the notification log: its pages are at most a
        # section (10) long before eventsourcing 9.5.
        items = school.recorder.select_notifications(start=1, limit=10_000)
        return [
            [n.id, n.topic, str(n.originator_id), n.originator_version]
            for n in items
        ]
    if command == "follow":
        school = TrainingSchool()
        counters = Counters()
        counters.follow(school.name, school.notification_log)
        counters.pull_and_process(school.name)
        return counters.recorder.max_tracking_id(school.name)
    if command == "count":
        counters = Counters()
        return {trick: counters.count(trick) for trick in args}
    if command == "tracked":
        return Counters().recorder.max_tracking_id(TrainingSchool.name)
    if command == "register-many":
        school = TrainingSchool()
        count, prefix = int(args[0]), args[1]
        owner = UUID(int=7)
        return [str(school.register(f"{prefix}{i}", owner)) for i in range(count)]
    if command == "tag":
        tags = Tags()
        tag = Tag(args[0])
        tags.save(tag)
        for _ in range(int(args[1])):
            tag = tags.repository.get(tag.id)
            tag.use()
            tags.save(tag)
        return tag.id
    if command == "use-tag":
        tags = Tags()
        tag = tags.repository.get(args[0])
        tag.use()
        tags.save(tag)
        return None
    if command == "get-tag":
        tags = Tags()
        return {tag_id: tags.get_tag(tag_id) for tag_id in args}
    if command == "snapshot-topics":
        tags = Tags()
        return [s.topic for s in tags.snapshots.recorder.select_events(args[0])]
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    json.dump(main(*sys.argv[1:]), sys.stdout)
