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

use std::sync::Arc;

use annals::dcb::{DcbApplication, DcbEvents, Folded, NewEvent, Perspective, Slice, Tagged};
use annals::env::Env;
use annals::persistence::dcb::DcbRecorder;
use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};
use annals::{settings, CommandError, Uuid};
use serde::{Deserialize, Serialize};

/// A course was registered, with the number of students it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
pub struct CourseRegistered {
    /// The course (tag `course-<id>`).
    #[tag(prefix = "course-")]
    pub course_id: Uuid,
    /// Its name.
    pub name: String,
    /// How many students it takes.
    pub capacity: u32,
}

/// A student was registered, with the number of courses they may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
pub struct StudentRegistered {
    /// The student (tag `student-<id>`).
    #[tag(prefix = "student-")]
    pub student_id: Uuid,
    /// Their name.
    pub name: String,
    /// How many courses they may take at once.
    pub max_courses: u32,
}

/// A student joined a course: one fact, in both boundaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
pub struct StudentJoinedCourse {
    /// The student.
    #[tag(prefix = "student-")]
    pub student_id: Uuid,
    /// The course.
    #[tag(prefix = "course-")]
    pub course_id: Uuid,
}

/// A student left a course.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Tagged)]
pub struct StudentLeftCourse {
    /// The student.
    #[tag(prefix = "student-")]
    pub student_id: Uuid,
    /// The course.
    #[tag(prefix = "course-")]
    pub course_id: Uuid,
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
    pub id: Uuid,
    /// Its name and capacity, once registered.
    pub registered: Option<(String, u32)>,
    /// Its students, in the order they joined.
    pub students: Vec<Uuid>,
}

impl Course {
    /// The course `id`, before its events are folded in.
    pub fn new(id: Uuid) -> Self {
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
        vec![format!("course-{}", self.id)]
    }

    fn apply(&mut self, event: CourseEvent) {
        match event {
            CourseEvent::Registered(e) => self.registered = Some((e.name, e.capacity)),
            CourseEvent::Joined(e) => self.students.push(e.student_id),
            CourseEvent::Left(e) => self.students.retain(|s| *s != e.student_id),
        }
    }
}

/// A student as their events say.
#[derive(Debug, Clone, PartialEq)]
pub struct Student {
    /// Their id.
    pub id: Uuid,
    /// Their name and maximum number of courses, once registered.
    pub registered: Option<(String, u32)>,
    /// Their courses.
    pub courses: Vec<Uuid>,
}

impl Student {
    /// The student `id`, before their events are folded in.
    pub fn new(id: Uuid) -> Self {
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
        vec![format!("student-{}", self.id)]
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
    NoSuchCourse(Uuid),
    /// No such student.
    #[error("no student {0}")]
    NoSuchStudent(Uuid),
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
    pub student: Uuid,
    /// Which course.
    pub course: Uuid,
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
    pub student: Uuid,
    /// Which course.
    pub course: Uuid,
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
    /// Over `recorder`.
    pub fn new(recorder: Arc<dyn DcbRecorder>) -> Self {
        Self {
            app: DcbApplication::new(recorder),
        }
    }

    /// Over the store the environment names (`PERSISTENCE_MODULE`, or
    /// `COURSES_PERSISTENCE_MODULE`, with that store's settings: see
    /// [`annals::persistence::dcb::open`]), else SQLite in the file
    /// `default_sqlite`.
    ///
    /// # Errors
    ///
    /// A bad setting, or a store that cannot be opened.
    pub fn from_env(default_sqlite: &str) -> annals::Result<Self> {
        let env = Env::from_process("Courses");
        let module = env.get(settings::PERSISTENCE_MODULE.name).map(|(_, v)| v);
        let recorder: Arc<dyn DcbRecorder> = match module {
            None => Arc::new(SqliteDcbRecorder::open(SqliteConfig::new(default_sqlite))?),
            // Any store with a DCB recorder, as its settings say.
            Some(_) => annals::persistence::dcb::open("Courses", &env)?,
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
    pub fn register_course(&self, name: &str, capacity: u32) -> annals::Result<Uuid> {
        let course_id = Uuid::new_v4();
        self.app.append([CourseRegistered {
            course_id,
            name: name.to_owned(),
            capacity,
        }])?;
        Ok(course_id)
    }

    /// Registers a student; returns their id.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn register_student(&self, name: &str, max_courses: u32) -> annals::Result<Uuid> {
        let student_id = Uuid::new_v4();
        self.app.append([StudentRegistered {
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
    pub fn join(&self, student: Uuid, course: Uuid) -> Result<(), CommandError<SubscriptionError>> {
        self.app.run(&JoinCourse { student, course }).map(|_| ())
    }

    /// `student` leaves `course`.
    ///
    /// # Errors
    ///
    /// The refusal, or the store's failure.
    pub fn leave(
        &self,
        student: Uuid,
        course: Uuid,
    ) -> Result<(), CommandError<SubscriptionError>> {
        self.app.run(&LeaveCourse { student, course }).map(|_| ())
    }

    /// The course as its events say.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn course(&self, id: Uuid) -> annals::Result<Course> {
        self.app
            .read(Course::new(id))
            .map(|f: Folded<Course>| f.state)
    }

    /// The student as their events say.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn student(&self, id: Uuid) -> annals::Result<Student> {
        self.app.read(Student::new(id)).map(|f| f.state)
    }
}
