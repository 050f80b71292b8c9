//! Course subscriptions with dynamic consistency boundaries (Python
//! eventsourcing's DCB example): courses with a capacity, students with a
//! maximum number of courses, and a subscription as one fact,
//! `StudentJoinedCourse`, tagged with both the student and the course.
//!
//! With aggregates, a subscription touches two (the course and the
//! student) and needs a process between them. Here the decision to join
//! reads one boundary, the course's events and the student's, and appends
//! one event on the condition that neither changed since: two students
//! racing for the last seat, or one student joining two courses at once
//! when they have one left, cannot both win.
//!
//! The events are those of Python's DCB application `Enrolment`
//! (`tests/python/enrolment.py`, on eventsourcing 9.5's enduring objects
//! and `MessagePackMapper`), and the store is that application's: on
//! PostgreSQL the tables `enrolment_events_tt_main` and `_tt_tag`. So
//! each reads and decides on what the other appended:
//! - a stored type is the topic of Python's class
//!   (`enrolment:Course.Registered`, a nested class);
//! - an enduring object's id is `<class>-<uuid4>` ([`CourseId`]), written
//!   as that string, and is its events' tag; an event of a group is
//!   tagged with each member's id, in the group's order;
//! - an initial event also names the object's class (`originator_topic`,
//!   [`COURSE_TOPIC`]), from which Python builds the object.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use annals::dcb::{DcbApplication, DcbEvents, Folded, NewEvent, Perspective, Slice, Tagged};
use annals::env::Env;
use annals::persistence::dcb::DcbRecorder;
use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};

use annals::{settings, CommandError, Uuid};
use serde::{Deserialize, Serialize};

/// The enduring-object ids of Python's DCB applications:
/// `<kind>-<uuid4>` ("course-…", from the class name), written as that
/// string in events and used as the object's tag.
macro_rules! enduring_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, random id (a v4 UUID, as Python's `uuid4()`).
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                s.strip_prefix($prefix)
                    .and_then(|uuid| Uuid::parse_str(uuid).ok())
                    .map(Self)
                    .ok_or_else(|| format!(concat!("{:?} is not \"", $prefix, "<uuid>\""), s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

enduring_id!(
    /// A course's id, `course-<uuid>`: its tag, and the id Python's
    /// `Course` enduring object gives itself.
    CourseId,
    "course-"
);
enduring_id!(
    /// A student's id, `student-<uuid>`.
    StudentId,
    "student-"
);

/// The topic of Python's `Course` class, which its initial event names.
pub const COURSE_TOPIC: &str = "enrolment:Course";
/// The topic of Python's `Student` class.
pub const STUDENT_TOPIC: &str = "enrolment:Student";

/// A course was registered, with the number of students it takes: the
/// initial event of Python's `Course` enduring object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "enrolment:Course.Registered")]
pub struct CourseRegistered {
    /// The class whose object this event creates ([`COURSE_TOPIC`]):
    /// Python's `InitialDecision` carries it.
    pub originator_topic: String,
    /// The course (its tag).
    #[tag]
    pub course_id: CourseId,
    /// Its name.
    pub name: String,
    /// How many students it takes.
    pub places: u32,
}

/// A student was registered, with the number of courses they may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "enrolment:Student.Registered")]
pub struct StudentRegistered {
    /// [`STUDENT_TOPIC`].
    pub originator_topic: String,
    /// The student (their tag).
    #[tag]
    pub student_id: StudentId,
    /// Their name.
    pub name: String,
    /// How many courses they may take at once.
    pub max_courses: u32,
}

/// A student joined a course: one fact, in both boundaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "enrolment:StudentJoinedCourse")]
pub struct StudentJoinedCourse {
    /// The student.
    #[tag]
    pub student_id: StudentId,
    /// The course.
    #[tag]
    pub course_id: CourseId,
}

/// A student left a course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
#[dcb(type = "enrolment:StudentLeftCourse")]
pub struct StudentLeftCourse {
    /// The student.
    #[tag]
    pub student_id: StudentId,
    /// The course.
    #[tag]
    pub course_id: CourseId,
}

/// What a course's state reads.
#[derive(Debug, DcbEvents)]
pub enum CourseEvent {
    /// Its registration.
    Registered(CourseRegistered),
    /// A student joined.
    Joined(StudentJoinedCourse),
    /// A student left.
    Left(StudentLeftCourse),
}

/// What a student's state reads.
#[derive(Debug, DcbEvents)]
pub enum StudentEvent {
    /// Their registration.
    Registered(StudentRegistered),
    /// They joined a course.
    Joined(StudentJoinedCourse),
    /// They left a course.
    Left(StudentLeftCourse),
}

/// A course as its events say (Python's enduring object: the boundary is
/// its tag).
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    /// Its id.
    pub id: CourseId,
    /// Its name and capacity, once registered.
    pub registered: Option<(String, u32)>,
    /// Its students, in the order they joined.
    pub students: Vec<StudentId>,
}

impl Course {
    /// The course `id`, before its events are folded in.
    pub fn new(id: CourseId) -> Self {
        Self {
            id,
            registered: None,
            students: Vec::new(),
        }
    }
}

impl Perspective for Course {
    type Events = CourseEvent;

    fn tags(&self) -> Vec<String> {
        vec![self.id.to_string()]
    }

    fn apply(&mut self, event: CourseEvent) {
        match event {
            CourseEvent::Registered(e) => self.registered = Some((e.name, e.places)),
            CourseEvent::Joined(e) => self.students.push(e.student_id),
            CourseEvent::Left(e) => self.students.retain(|s| *s != e.student_id),
        }
    }
}

/// A student as their events say.
#[derive(Debug, Clone, PartialEq)]
pub struct Student {
    /// Their id.
    pub id: StudentId,
    /// Their name and maximum number of courses, once registered.
    pub registered: Option<(String, u32)>,
    /// Their courses.
    pub courses: Vec<CourseId>,
}

impl Student {
    /// The student `id`, before their events are folded in.
    pub fn new(id: StudentId) -> Self {
        Self {
            id,
            registered: None,
            courses: Vec::new(),
        }
    }
}

impl Perspective for Student {
    type Events = StudentEvent;

    fn tags(&self) -> Vec<String> {
        vec![self.id.to_string()]
    }

    fn apply(&mut self, event: StudentEvent) {
        match event {
            StudentEvent::Registered(e) => self.registered = Some((e.name, e.max_courses)),
            StudentEvent::Joined(e) => self.courses.push(e.course_id),
            StudentEvent::Left(e) => self.courses.retain(|c| *c != e.course_id),
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// No such course.
    #[error("no course {0}")]
    NoSuchCourse(CourseId),
    /// No such student.
    #[error("no student {0}")]
    NoSuchStudent(StudentId),
    /// The course has as many students as it takes.
    #[error("{course} is full ({capacity} students)")]
    CourseFull {
        /// The course's name.
        course: String,
        /// Its capacity.
        capacity: u32,
    },
    /// The student takes as many courses as they may.
    #[error("{student} already takes {max} courses")]
    TooManyCourses {
        /// The student's name.
        student: String,
        /// Their maximum.
        max: u32,
    },
    /// The student is in the course already.
    #[error("already in the course")]
    AlreadyJoined,
    /// The student is not in the course.
    #[error("not in the course")]
    NotJoined,
}

/// The decision to join a course: it reads the course and the student
/// (a group: one boundary of both), and appends one event.
#[derive(Debug, Clone, Copy)]
pub struct JoinCourse {
    /// Who.
    pub student: StudentId,
    /// Which course.
    pub course: CourseId,
}

impl Slice for JoinCourse {
    type State = (Course, Student);
    type Error = SubscriptionError;

    fn state(&self) -> (Course, Student) {
        (Course::new(self.course), Student::new(self.student))
    }

    fn decide(&self, (course, student): &(Course, Student)) -> Result<Vec<NewEvent>, Self::Error> {
        let (course_name, capacity) = course
            .registered
            .clone()
            .ok_or(SubscriptionError::NoSuchCourse(course.id))?;
        let (student_name, max) = student
            .registered
            .clone()
            .ok_or(SubscriptionError::NoSuchStudent(student.id))?;
        if student.courses.contains(&course.id) {
            return Err(SubscriptionError::AlreadyJoined);
        }
        if course.students.len() >= capacity as usize {
            return Err(SubscriptionError::CourseFull {
                course: course_name,
                capacity,
            });
        }
        if student.courses.len() >= max as usize {
            return Err(SubscriptionError::TooManyCourses {
                student: student_name,
                max,
            });
        }
        Ok(vec![StudentJoinedCourse {
            student_id: student.id,
            course_id: course.id,
        }
        .into()])
    }
}

/// The decision to leave a course.
#[derive(Debug, Clone, Copy)]
pub struct LeaveCourse {
    /// Who.
    pub student: StudentId,
    /// Which course.
    pub course: CourseId,
}

impl Slice for LeaveCourse {
    type State = Student;
    type Error = SubscriptionError;

    fn state(&self) -> Student {
        Student::new(self.student)
    }

    fn decide(&self, student: &Student) -> Result<Vec<NewEvent>, Self::Error> {
        if !student.courses.contains(&self.course) {
            return Err(SubscriptionError::NotJoined);
        }
        Ok(vec![StudentLeftCourse {
            student_id: self.student,
            course_id: self.course,
        }
        .into()])
    }
}

/// The application: courses and students in one DCB store.
#[derive(Debug, Clone)]
pub struct Courses {
    app: DcbApplication,
}

impl Courses {
    /// The application's name, as Python's `Enrolment` is named: its
    /// tables' prefix and its settings' (`ENROLMENT_PERSISTENCE_MODULE`).
    pub const NAME: &'static str = "Enrolment";

    /// Over `recorder`.
    pub fn new(recorder: Arc<dyn DcbRecorder>) -> Self {
        Self {
            app: DcbApplication::new(recorder),
        }
    }

    /// Over the store the environment names (`PERSISTENCE_MODULE`, or
    /// `ENROLMENT_PERSISTENCE_MODULE`, with that store's settings: see
    /// [`annals::persistence::dcb::open`]), else SQLite in the file
    /// `default_sqlite`.
    ///
    /// # Errors
    ///
    /// A bad setting, or a store that cannot be opened.
    pub fn from_env(default_sqlite: &str) -> annals::Result<Self> {
        let env = Env::from_process(Self::NAME);
        let module = env.get(settings::PERSISTENCE_MODULE.name).map(|(_, v)| v);
        let recorder: Arc<dyn DcbRecorder> = match module {
            None => Arc::new(SqliteDcbRecorder::open(SqliteConfig::new(default_sqlite))?),
            // Any store with a DCB recorder, as its settings say.
            Some(_) => annals::persistence::dcb::open(Self::NAME, &env)?,
        };
        Ok(Self::new(recorder))
    }

    /// The DCB application underneath.
    pub fn app(&self) -> &DcbApplication {
        &self.app
    }

    /// Registers a course; returns its id.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn register_course(&self, name: &str, places: u32) -> annals::Result<CourseId> {
        let course_id = CourseId::new();
        self.app.append([CourseRegistered {
            originator_topic: COURSE_TOPIC.to_owned(),
            course_id,
            name: name.to_owned(),
            places,
        }])?;
        Ok(course_id)
    }

    /// Registers a student; returns their id.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn register_student(&self, name: &str, max_courses: u32) -> annals::Result<StudentId> {
        let student_id = StudentId::new();
        self.app.append([StudentRegistered {
            originator_topic: STUDENT_TOPIC.to_owned(),
            student_id,
            name: name.to_owned(),
            max_courses,
        }])?;
        Ok(student_id)
    }

    /// `student` joins `course`, if the course has a seat and the student
    /// a course left.
    ///
    /// # Errors
    ///
    /// The refusal, or the store's failure.
    pub fn join(
        &self,
        student: StudentId,
        course: CourseId,
    ) -> Result<(), CommandError<SubscriptionError>> {
        self.app.run(&JoinCourse { student, course }).map(|_| ())
    }

    /// `student` leaves `course`.
    ///
    /// # Errors
    ///
    /// The refusal, or the store's failure.
    pub fn leave(
        &self,
        student: StudentId,
        course: CourseId,
    ) -> Result<(), CommandError<SubscriptionError>> {
        self.app.run(&LeaveCourse { student, course }).map(|_| ())
    }

    /// The course as its events say.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn course(&self, id: CourseId) -> annals::Result<Course> {
        self.app
            .read(Course::new(id))
            .map(|f: Folded<Course>| f.state)
    }

    /// The student as their events say.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn student(&self, id: StudentId) -> annals::Result<Student> {
        self.app.read(Student::new(id)).map(|f| f.state)
    }
}
