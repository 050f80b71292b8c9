"""Course subscriptions with Python eventsourcing 9.5's DCB application
layer: enduring objects (Student, Course), a group (StudentAndCourse),
and the MessagePackMapper chosen by MAPPER_TOPIC. annals' courses example
(examples/src/courses.rs) writes and reads the same events: its types are
these classes' topics ("enrolment:Course.Registered", ...), and it opens
the same store (application name "Enrolment")."""

from eventsourcing.dcb.application import DCBApplication
from eventsourcing.dcb.domain import EnduringObject, Group
from eventsourcing.dcb.msgpack import Decision, InitialDecision, MessagePackMapper
from eventsourcing.domain import event
from eventsourcing.utils import get_topic


class FullyBookedError(Exception):
    pass


class TooManyCoursesError(Exception):
    pass


class AlreadyJoinedError(Exception):
    pass


class NotJoinedError(Exception):
    pass


class StudentJoinedCourse(Decision):
    student_id: str
    course_id: str


class StudentLeftCourse(Decision):
    student_id: str
    course_id: str


class Student(EnduringObject):
    class Registered(InitialDecision):
        student_id: str
        name: str
        max_courses: int

    def __init__(self, name: str, max_courses: int) -> None:
        self.name = name
        self.max_courses = max_courses
        self.course_ids: list[str] = []

    @event(StudentJoinedCourse)
    def _(self, course_id: str) -> None:
        if course_id in self.course_ids:
            raise AlreadyJoinedError
        if len(self.course_ids) >= self.max_courses:
            raise TooManyCoursesError
        self.course_ids.append(course_id)

    @event(StudentLeftCourse)
    def _(self, course_id: str) -> None:
        self.course_ids.remove(course_id)


class Course(EnduringObject):
    class Registered(InitialDecision):
        course_id: str
        name: str
        places: int

    def __init__(self, name: str, places: int) -> None:
        self.name = name
        self.places = places
        self.student_ids: list[str] = []

    @event(StudentJoinedCourse)
    def _(self, student_id: str) -> None:
        if student_id in self.student_ids:
            raise AlreadyJoinedError
        if len(self.student_ids) >= self.places:
            raise FullyBookedError
        self.student_ids.append(student_id)

    @event(StudentLeftCourse)
    def _(self, student_id: str) -> None:
        self.student_ids.remove(student_id)


class StudentAndCourse(Group):
    def __init__(self, student: Student, course: Course) -> None:
        self.student = student
        self.course = course

    def join(self) -> None:
        self.trigger_event(
            StudentJoinedCourse,
            student_id=self.student.id,
            course_id=self.course.id,
        )

    def leave(self) -> None:
        if self.course.id not in self.student.course_ids:
            raise NotJoinedError
        self.trigger_event(
            StudentLeftCourse,
            student_id=self.student.id,
            course_id=self.course.id,
        )


class Enrolment(DCBApplication):
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.dcb.popo",
        "MAPPER_TOPIC": get_topic(MessagePackMapper),
    }

    def register_student(self, name: str, max_courses: int) -> str:
        student = Student(name=name, max_courses=max_courses)
        self.repository.save(student)
        return student.id

    def register_course(self, name: str, places: int) -> str:
        course = Course(name=name, places=places)
        self.repository.save(course)
        return course.id

    def group(self, student_id: str, course_id: str) -> StudentAndCourse:
        return self.repository.get_group(StudentAndCourse, student_id, course_id)

    def join_course(self, student_id: str, course_id: str) -> None:
        group = self.group(student_id, course_id)
        group.join()
        self.repository.save(group)

    def leave_course(self, student_id: str, course_id: str) -> None:
        group = self.group(student_id, course_id)
        group.leave()
        self.repository.save(group)

    def course(self, course_id: str) -> Course:
        return self.repository.get(course_id)

    def student(self, student_id: str) -> Student:
        return self.repository.get(student_id)
