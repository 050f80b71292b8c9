"""The Python side of annals' interop tests: the Python library's own
TrainingSchool (its tutorial's dogs), and a process application that counts
tricks, as a Python service that an annals one shares a store with."""

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import (
    Aggregate,
    BaseAggregate,
    CanCreateTimestamp,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
    event,
)
from eventsourcing.system import ProcessApplication


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str, owner: UUID) -> None:
        self.name = name
        self.owner = owner
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class TrainingSchool(Application):
    snapshotting_intervals = {Dog: 3}

    def register(self, name: str, owner: UUID) -> UUID:
        dog = Dog(name, owner)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: UUID) -> dict:
        dog = self.repository.get(dog_id)
        return {
            "name": dog.name,
            "owner": str(dog.owner),
            "owner_type": type(dog.owner).__name__,
            "tricks": list(dog.tricks),
            "version": dog.version,
            "created_on": dog.created_on.isoformat(),
            "modified_on": dog.modified_on.isoformat(),
        }


class Counter(Aggregate):
    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/counters/{name}")

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(ProcessApplication):
    """Counts each trick added to any dog: exactly once, by tracking."""

    @singledispatchmethod
    def policy(self, domain_event, processing_event):
        pass

    @policy.register(Dog.TrickAdded)
    def _(self, domain_event, processing_event):
        counter_id = Counter.create_id(domain_event.trick)
        try:
            counter = self.repository.get(counter_id)
        except AggregateNotFoundError:
            counter = Counter(domain_event.trick)
        counter.increment()
        processing_event.collect_events(counter)

    def count(self, trick: str) -> int:
        try:
            return self.repository.get(Counter.create_id(trick)).count
        except AggregateNotFoundError:
            return 0


class StrEvent(CanCreateTimestamp, metaclass=MetaDomainEvent):
    """The fields of every event of an aggregate with string ids (the
    library's DomainEvent takes UUIDs only)."""

    originator_id: str
    originator_version: int
    timestamp: datetime


class StrAggregate(BaseAggregate[str]):
    """A base for aggregates with string ids, as the library's Aggregate is
    for UUIDs."""

    class Event(CanMutateAggregate[str], StrEvent):
        pass

    class Created(Event, CanInitAggregate[str]):
        originator_topic: str

    class Snapshot(CanSnapshotAggregate[str], StrEvent):
        topic: str
        state: dict[str, Any]


class Tag(StrAggregate):
    """An aggregate with a string id, snapshotted as its own Snapshot."""

    class Snapshot(StrAggregate.Snapshot):
        pass

    @event("Named")
    def __init__(self, name: str) -> None:
        self.name = name
        self.uses = 0

    @staticmethod
    def create_id(name: str) -> str:
        return f"tag-{name}"

    @event("Used")
    def use(self) -> None:
        self.uses += 1


class Tags(Application):
    snapshotting_intervals = {Tag: 3}

    def get_tag(self, tag_id: str) -> dict:
        tag = self.repository.get(tag_id)
        return {"name": tag.name, "uses": tag.uses, "version": tag.version}
