"""Commands the Rust DCB interop tests run against the real Python
library's PostgresDCBRecorderTT (eventsourcing 9.5's postgres_tt layout).
Settings come from the environment: POSTGRES_DBNAME, POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_SCHEMA, and
DCB_EVENTS_TABLE (Python's events_table_name). Every command reads one
JSON document from its argument and prints one JSON document on stdout.

    create                       creates the tables, types and functions
    append {"events": [...], "condition": {"items": [...], "after": N} | null}
                                 {"position": N} or {"conflict": true}
    read {"items": [...], "after": N, "limit": N}
                                 {"events": [...], "head": N}
    subscribe {"items": [...], "after": N, "count": N}
                                 prints {"ready": true} once listening, then
                                 {"positions": [...]} of the first N events
An event is {"type": T, "data": HEX, "tags": [...], "position": N}.
"""

import json
import os
import sys
import time

from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem
from eventsourcing.dcb.postgres_tt import PostgresDCBRecorderTT
from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore


def recorder() -> PostgresDCBRecorderTT:
    env = os.environ
    datastore = PostgresDatastore(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD", ""),
        schema=env.get("POSTGRES_SCHEMA", ""),
        pool_size=2,
    )
    return PostgresDCBRecorderTT(datastore, events_table_name=env["DCB_EVENTS_TABLE"])


def query(doc: dict) -> DCBQuery:
    return DCBQuery(
        items=[DCBQueryItem(types=i["types"], tags=i["tags"]) for i in doc["items"]]
    )


def event_doc(e) -> dict:
    return {
        "type": e.event.type,
        "data": e.event.data.hex(),
        "tags": list(e.event.tags),
        "position": e.position,
    }


def main(command: str, arg: str = "{}") -> None:
    doc = json.loads(arg)
    r = recorder()
    if command == "create":
        r.create_table()
        out: object = None
    elif command == "append":
        events = [
            DCBEvent(type=e["type"], data=bytes.fromhex(e["data"]), tags=e["tags"])
            for e in doc["events"]
        ]
        c = doc.get("condition")
        condition = (
            None
            if c is None
            else DCBAppendCondition(fail_if_events_match=query(c), after=c["after"])
        )
        try:
            out = {"position": r.append(events, condition)}
        except IntegrityError:
            out = {"conflict": True}
    elif command == "read":
        response = r.read(query(doc), after=doc.get("after"), limit=doc.get("limit"))
        events = [event_doc(e) for e in response]
        out = {"events": events, "head": response.head}
    elif command == "subscribe":
        subscription = r.subscribe(query(doc), after=doc.get("after"))
        # Its thread has a connection, and runs LISTEN on it next: a
        # NOTIFY before that would be missed (the subscription waits for
        # the next one).
        subscription._has_listen_connection.wait(timeout=10)
        time.sleep(0.5)
        print(json.dumps({"ready": True}), flush=True)
        positions = [next(subscription).position for _ in range(doc["count"])]
        print(json.dumps({"positions": positions}), flush=True)
        # Python 3.11's queue has no shutdown(), which stop() calls.
        os._exit(0)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
