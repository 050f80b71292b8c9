"""Commands that drive the Python `Enrolment` DCB application
(`enrolment.py`) for the Rust tests and benchmark. Its store comes from
the environment as Python's DCBApplication reads it: PERSISTENCE_MODULE
(eventsourcing.dcb.postgres_tt for PostgreSQL), POSTGRES_DBNAME,
POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD,
POSTGRES_SCHEMA. Each command prints one JSON document on stdout.

    register-course NAME PLACES      {"id": "course-..."}
    register-student NAME MAX        {"id": "student-..."}
    join STUDENT COURSE              {"ok": true} or {"error": "FullyBookedError"}
                                     or {"error": "IntegrityError"} (a failed condition)
    leave STUDENT COURSE             as `join`
    stale-join STUDENT COURSE        reads the group, prints {"read": true}, waits
                                     for a line on stdin, then saves as `join`
    course ID                        {"name": ..., "places": N, "student_ids": [...]}
    student ID                       {"name": ..., "max_courses": N, "course_ids": [...]}
    speedrun SECONDS                 the enrolment speedrun (per iteration 10
                                     courses, 10 students, 100 joins: 120 ops)
                                     for at least SECONDS: {"ops": N, "seconds": S}
"""

import json
import sys
import time

from enrolment import Enrolment
from eventsourcing.persistence import IntegrityError

COURSES = 10
STUDENTS = 10


def outcome(action) -> dict:
    try:
        action()
    except IntegrityError:
        return {"error": "IntegrityError"}
    except Exception as e:  # the domain's refusals
        return {"error": type(e).__name__}
    return {"ok": True}


def speedrun(app: Enrolment, seconds: float) -> dict:
    ops = 0
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        courses = []
        for _ in range(COURSES):
            n += 1
            courses.append(app.register_course(f"course-{n}", STUDENTS))
            ops += 1
        students = []
        for _ in range(STUDENTS):
            n += 1
            students.append(app.register_student(f"student-{n}", COURSES))
            ops += 1
        for course_id in courses:
            for student_id in students:
                app.join_course(student_id, course_id)
                ops += 1
    return {"ops": ops, "seconds": time.perf_counter() - started}


def main(command: str, *args: str) -> dict:
    with Enrolment() as app:
        if command == "register-course":
            return {"id": app.register_course(args[0], int(args[1]))}
        if command == "register-student":
            return {"id": app.register_student(args[0], int(args[1]))}
        if command == "join":
            return outcome(lambda: app.join_course(args[0], args[1]))
        if command == "leave":
            return outcome(lambda: app.leave_course(args[0], args[1]))
        if command == "stale-join":
            group = app.group(args[0], args[1])
            print(json.dumps({"read": True}), flush=True)
            sys.stdin.readline()

            def save() -> None:
                group.join()
                app.repository.save(group)

            return outcome(save)
        if command == "course":
            c = app.course(args[0])
            return {"name": c.name, "places": c.places, "student_ids": c.student_ids}
        if command == "student":
            s = app.student(args[0])
            return {"name": s.name, "max_courses": s.max_courses, "course_ids": s.course_ids}
        if command == "speedrun":
            return speedrun(app, float(args[0]))
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])), flush=True)
