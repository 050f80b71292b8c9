//! The DCB "enrolment speedrun" (Python eventsourcing's, from its DCB
//! documentation): one client, per iteration 10 courses (10 places each),
//! 10 students (10 courses each), then every student joins every course
//! (100 joins): 120 operations, repeated for a number of seconds.
//!
//! Configurations, each in a fresh process:
//!
//! - `agg-sqlite`, `agg-postgres`: annals' aggregates (a `Course` and a
//!   `Student`; a join gets both, checks, records on both and saves both
//!   in one save), as Python's `EnrolmentWithAggregates`.
//! - `dcb-sqlite`, `dcb-postgres`, `dcb-umadb`: the courses example
//!   (`annals_examples::courses`) on annals' DCB recorders.
//! - `umadb-raw`: `umadb-client` alone making the calls `dcb-umadb` makes
//!   (the same reads by query, the same conditional appends, the same
//!   bytes and tags).
//! - `python-postgres_tt`: Python eventsourcing 9.5.6's own DCB
//!   application (`tests/python/enrolment_cli.py speedrun`) on the same
//!   PostgreSQL server.
//!
//! After each run, outside the timing, the last iteration is checked
//! (each course has its 10 students, each student 10 courses) and, on a
//! fresh store, the number of events stored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use annals::dcb::{DcbEvents, Tagged};
use annals::persistence::dcb::{DcbQuery, DcbQueryItem, DcbRecorder};
use annals::persistence::postgres::{PostgresConfig, PostgresDcbRecorder};
use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};
use annals::persistence::umadb::{UmaDbConfig, UmaDbRecorder};
use annals::prelude::*;
use annals_examples::courses::{
    CourseEvent, CourseId, CourseRegistered, Courses, StudentEvent, StudentId, StudentJoinedCourse,
    StudentRegistered, COURSE_TOPIC, STUDENT_TOPIC,
};
use serde::{Deserialize, Serialize};
use umadb_dcb::DcbEventStoreAsync;

use crate::workload::{fail, Res};

/// Courses per iteration.
const COURSES: usize = 10;
/// Students per iteration.
const STUDENTS: usize = 10;
/// Operations per iteration: registrations and joins.
pub(crate) const OPS_PER_ITERATION: u64 = (COURSES + STUDENTS + COURSES * STUDENTS) as u64;

/// The configurations, in the order they run and print.
pub(crate) const CONFIGS: [&str; 7] = [
    "agg-sqlite",
    "agg-postgres",
    "dcb-sqlite",
    "dcb-postgres",
    "dcb-umadb",
    "umadb-raw",
    "python-postgres_tt",
];

/// What one run did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Run {
    /// Operations done.
    pub ops: u64,
    /// How long they took, in seconds.
    pub seconds: f64,
}

impl Run {
    /// Operations per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// The UmaDB server: `UMADB_URI`, else `ANNALS_UMADB_URI` (what
/// `.ci/umadb` exports).
pub(crate) fn umadb_uri() -> Option<String> {
    ["UMADB_URI", "ANNALS_UMADB_URI"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Python's interpreter (with eventsourcing 9.5.6): `ANNALS_PYTHON`.
fn python() -> Option<String> {
    std::env::var("ANNALS_PYTHON")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Why `config` cannot run here, if it cannot.
pub(crate) fn skipped(config: &str) -> Option<&'static str> {
    let postgres = crate::pg_settings().is_some();
    match config {
        "agg-postgres" | "dcb-postgres" if !postgres => Some("POSTGRES_DBNAME is not set"),
        "dcb-umadb" | "umadb-raw" if umadb_uri().is_none() => {
            Some("UMADB_URI (or ANNALS_UMADB_URI) is not set")
        }
        "python-postgres_tt" if !postgres => Some("POSTGRES_DBNAME is not set"),
        "python-postgres_tt" if python().is_none() => Some("ANNALS_PYTHON is not set"),
        _ => None,
    }
}

/// One system under the speedrun: what it registers and joins with, and
/// how to look at the result afterwards.
trait Enrolment {
    type Course;
    type Student;
    fn register_course(&mut self, name: &str, places: u32) -> Res<Self::Course>;
    fn register_student(&mut self, name: &str, max_courses: u32) -> Res<Self::Student>;
    fn join(&mut self, student: &Self::Student, course: &Self::Course) -> Res<()>;
    /// How many students `course` has (outside the timing).
    fn students_of(&mut self, course: &Self::Course) -> Res<usize>;
    /// How many courses `student` takes (outside the timing).
    fn courses_of(&mut self, student: &Self::Student) -> Res<usize>;
    /// Events stored, when the store is this run's alone.
    fn stored(&mut self) -> Res<Option<u64>>;
    /// Events stored per iteration.
    fn events_per_iteration(&self) -> u64 {
        OPS_PER_ITERATION
    }
}

/// Runs iterations for at least `seconds`, then checks the last one and
/// the number of events stored.
fn speedrun<E: Enrolment>(e: &mut E, seconds: f64) -> Res<Run> {
    let mut ops = 0u64;
    let mut n = 0usize;
    let mut iterations = 0u64;
    let mut last = None;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let mut courses = Vec::with_capacity(COURSES);
        for _ in 0..COURSES {
            n += 1;
            courses.push(e.register_course(&format!("course-{n}"), STUDENTS as u32)?);
            ops += 1;
        }
        let mut students = Vec::with_capacity(STUDENTS);
        for _ in 0..STUDENTS {
            n += 1;
            students.push(e.register_student(&format!("student-{n}"), COURSES as u32)?);
            ops += 1;
        }
        for course in &courses {
            for student in &students {
                e.join(student, course)?;
                ops += 1;
            }
        }
        iterations += 1;
        last = Some((courses, students));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (courses, students) = last.ok_or("no iteration ran")?;
    for course in &courses {
        let found = e.students_of(course)?;
        if found != STUDENTS {
            return fail(format!(
                "a course has {found} students, expected {STUDENTS}"
            ));
        }
    }
    for student in &students {
        let found = e.courses_of(student)?;
        if found != COURSES {
            return fail(format!(
                "a student takes {found} courses, expected {COURSES}"
            ));
        }
    }
    if let Some(stored) = e.stored()? {
        let expected = iterations * e.events_per_iteration();
        if stored != expected {
            return fail(format!(
                "{stored} events stored after {iterations} iterations, expected {expected}"
            ));
        }
    }
    Ok(Run { ops, seconds })
}

// ---- annals' aggregates ----

/// The aggregates (their macros name event enums `CourseEvent` and
/// `StudentEvent`, as the courses example does: a module of their own).
mod agg {
    use annals::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A course, as an aggregate.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(super) struct Course {
        /// Its name.
        pub name: String,
        /// How many students it takes.
        pub places: u32,
        /// Its students.
        pub student_ids: Vec<Uuid>,
    }

    #[aggregate]
    impl Course {
        /// Registers a course.
        #[event("Registered")]
        pub fn register(name: String, places: u32) -> Self {
            Course {
                name,
                places,
                student_ids: Vec::new(),
            }
        }

        /// A student joined.
        #[event("StudentJoined")]
        pub fn accept(&mut self, student_id: Uuid) {
            self.student_ids.push(student_id);
        }
    }

    /// A student, as an aggregate.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(super) struct Student {
        /// Their name.
        pub name: String,
        /// How many courses they may take.
        pub max_courses: u32,
        /// Their courses.
        pub course_ids: Vec<Uuid>,
    }

    #[aggregate]
    impl Student {
        /// Registers a student.
        #[event("Registered")]
        pub fn register(name: String, max_courses: u32) -> Self {
            Student {
                name,
                max_courses,
                course_ids: Vec::new(),
            }
        }

        /// They joined a course.
        #[event("JoinedCourse")]
        pub fn join(&mut self, course_id: Uuid) {
            self.course_ids.push(course_id);
        }
    }
}

use agg::{Course, Student};

/// Python's `EnrolmentWithAggregates` in annals.
struct Aggregates {
    app: Application,
}

impl Enrolment for Aggregates {
    type Course = Uuid;
    type Student = Uuid;

    fn register_course(&mut self, name: &str, places: u32) -> Res<Uuid> {
        let mut course = Course::register(name.to_owned(), places);
        self.app.save(&mut course)?;
        Ok(course.id())
    }

    fn register_student(&mut self, name: &str, max_courses: u32) -> Res<Uuid> {
        let mut student = Student::register(name.to_owned(), max_courses);
        self.app.save(&mut student)?;
        Ok(student.id())
    }

    fn join(&mut self, student_id: &Uuid, course_id: &Uuid) -> Res<()> {
        let mut course: Course = self.app.get(*course_id)?;
        let mut student: Student = self.app.get(*student_id)?;
        if course.student_ids.contains(student_id) {
            return fail("already joined".into());
        }
        if course.student_ids.len() >= course.places as usize {
            return fail(format!("{} is fully booked", course.name));
        }
        if student.course_ids.len() >= student.max_courses as usize {
            return fail(format!("{} takes too many courses", student.name));
        }
        course.accept(*student_id);
        student.join(*course_id);
        self.app.save((&mut course, &mut student))?;
        Ok(())
    }

    fn students_of(&mut self, course: &Uuid) -> Res<usize> {
        Ok(self.app.get::<Course>(*course)?.student_ids.len())
    }

    fn courses_of(&mut self, student: &Uuid) -> Res<usize> {
        Ok(self.app.get::<Student>(*student)?.course_ids.len())
    }

    fn stored(&mut self) -> Res<Option<u64>> {
        Ok(Some(self.app.recorder().max_notification_id()?))
    }

    /// A join records an event on each of the two.
    fn events_per_iteration(&self) -> u64 {
        (COURSES + STUDENTS + 2 * COURSES * STUDENTS) as u64
    }
}

// ---- annals' DCB: the courses example ----

/// The courses example over a recorder.
struct Dcb {
    courses: Courses,
    recorder: Arc<dyn DcbRecorder>,
    /// Whether the store holds this run's events alone.
    fresh: bool,
}

impl Dcb {
    fn new(recorder: Arc<dyn DcbRecorder>, fresh: bool) -> Self {
        Self {
            courses: Courses::new(recorder.clone()),
            recorder,
            fresh,
        }
    }
}

/// The last position in `recorder` (a query that matches nothing, read
/// without a limit, has the store's head).
pub(crate) fn head(recorder: &dyn DcbRecorder) -> Res<u64> {
    let nothing = DcbQuery::item(DcbQueryItem::new().tags(["no-such-tag"]));
    Ok(recorder.read(&nothing, None, None)?.head.unwrap_or(0))
}

impl Enrolment for Dcb {
    type Course = CourseId;
    type Student = StudentId;

    fn register_course(&mut self, name: &str, places: u32) -> Res<CourseId> {
        Ok(self.courses.register_course(name, places)?)
    }

    fn register_student(&mut self, name: &str, max_courses: u32) -> Res<StudentId> {
        Ok(self.courses.register_student(name, max_courses)?)
    }

    fn join(&mut self, student: &StudentId, course: &CourseId) -> Res<()> {
        self.courses.join(*student, *course).map_err(|e| match e {
            annals::CommandError::Failed(e) => Box::new(e) as crate::workload::Error,
            other => format!("join: {other}").into(),
        })
    }

    fn students_of(&mut self, course: &CourseId) -> Res<usize> {
        Ok(self.courses.course(*course)?.students.len())
    }

    fn courses_of(&mut self, student: &StudentId) -> Res<usize> {
        Ok(self.courses.student(*student)?.courses.len())
    }

    fn stored(&mut self) -> Res<Option<u64>> {
        if !self.fresh {
            return Ok(None);
        }
        head(self.recorder.as_ref()).map(Some)
    }
}

// ---- umadb-client alone ----

/// `umadb-client`'s async client making the calls the courses example
/// makes on UmaDB: the same events (encoded by the same function,
/// MessagePack by rmp-serde), the same query items, the same conditions,
/// each call blocked on from this thread on a 2-worker runtime (as
/// annals' recorder does; the client's own sync wrapper was slower: it
/// blocks once per streamed batch).
struct RawUmaDb {
    client: umadb_client::AsyncUmaDbClient,
    runtime: tokio::runtime::Runtime,
}

impl RawUmaDb {
    fn connect(uri: String) -> Res<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let client = runtime.block_on(umadb_client::UmaDbClient::new(uri).connect_async())?;
        Ok(Self { client, runtime })
    }

    fn read(
        &self,
        query: umadb_dcb::DcbQuery,
    ) -> Res<(Vec<umadb_dcb::DcbSequencedEvent>, Option<u64>)> {
        Ok(self
            .runtime
            .block_on(self.client.read_with_head(Some(query), None, false, None))?)
    }

    fn append(
        &self,
        event: annals::persistence::dcb::DcbEvent,
        condition: Option<umadb_dcb::DcbAppendCondition>,
    ) -> Res<u64> {
        Ok(self
            .runtime
            .block_on(self.client.append(vec![uma_event(event)], condition, None))?)
    }
}

fn uma_event(event: annals::persistence::dcb::DcbEvent) -> umadb_dcb::DcbEvent {
    umadb_dcb::DcbEvent::default()
        .event_type(event.type_)
        .data(event.data)
        .tags(event.tags)
}

fn uma_item(types: &[&str], tag: String) -> umadb_dcb::DcbQueryItem {
    umadb_dcb::DcbQueryItem::new()
        .types(types.iter().map(|t| (*t).to_owned()))
        .tags([tag])
}

fn decode<T: Tagged>(data: &[u8]) -> Res<T> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(data).with_human_readable();
    Ok(T::deserialize(&mut deserializer)?)
}

/// A course or student as the raw client folds it: (places or maximum,
/// joins).
fn fold(events: &[umadb_dcb::DcbSequencedEvent], tag: &str) -> Res<(Option<u32>, usize)> {
    let mut limit = None;
    let mut joined = 0;
    for e in events {
        if !e.event.tags.iter().any(|t| t == tag) {
            continue;
        }
        match e.event.event_type.as_str() {
            CourseRegistered::TYPE => {
                limit = Some(decode::<CourseRegistered>(&e.event.data)?.places)
            }
            StudentRegistered::TYPE => {
                limit = Some(decode::<StudentRegistered>(&e.event.data)?.max_courses)
            }
            StudentJoinedCourse::TYPE => {
                decode::<StudentJoinedCourse>(&e.event.data)?;
                joined += 1;
            }
            other => return fail(format!("unexpected event type {other}")),
        }
    }
    Ok((limit, joined))
}

impl RawUmaDb {
    fn boundary(&self, tag: String, types: &[&str]) -> Res<(Option<u32>, usize)> {
        let query = umadb_dcb::DcbQuery::new().item(uma_item(types, tag.clone()));
        let (events, _) = self.read(query)?;
        fold(&events, &tag)
    }
}

impl Enrolment for RawUmaDb {
    type Course = CourseId;
    type Student = StudentId;

    fn register_course(&mut self, name: &str, places: u32) -> Res<CourseId> {
        let course_id = CourseId::new();
        let event = annals::dcb::encode(&CourseRegistered {
            originator_topic: COURSE_TOPIC.to_owned(),
            course_id,
            name: name.to_owned(),
            places,
        })?;
        self.append(event, None)?;
        Ok(course_id)
    }

    fn register_student(&mut self, name: &str, max_courses: u32) -> Res<StudentId> {
        let student_id = StudentId::new();
        let event = annals::dcb::encode(&StudentRegistered {
            originator_topic: STUDENT_TOPIC.to_owned(),
            student_id,
            name: name.to_owned(),
            max_courses,
        })?;
        self.append(event, None)?;
        Ok(student_id)
    }

    fn join(&mut self, student: &StudentId, course: &CourseId) -> Res<()> {
        // The tags are the ids (`course-<uuid>`, `student-<uuid>`).
        let (ctag, stag) = (course.to_string(), student.to_string());
        let query = umadb_dcb::DcbQuery::new()
            .item(uma_item(CourseEvent::TYPES, ctag.clone()))
            .item(uma_item(StudentEvent::TYPES, stag.clone()));
        let (events, head) = self.read(query.clone())?;
        let (places, students) = fold(&events, &ctag)?;
        let (max, courses) = fold(&events, &stag)?;
        let (places, max) = (places.ok_or("no course")?, max.ok_or("no student")?);
        if students >= places as usize || courses >= max as usize {
            return fail("refused".into());
        }
        let event = annals::dcb::encode(&StudentJoinedCourse {
            student_id: *student,
            course_id: *course,
        })?;
        let condition = umadb_dcb::DcbAppendCondition::new(query).after(head);
        self.append(event, Some(condition))?;
        Ok(())
    }

    fn students_of(&mut self, course: &CourseId) -> Res<usize> {
        Ok(self.boundary(course.to_string(), CourseEvent::TYPES)?.1)
    }

    fn courses_of(&mut self, student: &StudentId) -> Res<usize> {
        Ok(self.boundary(student.to_string(), StudentEvent::TYPES)?.1)
    }

    fn stored(&mut self) -> Res<Option<u64>> {
        Ok(None)
    }
}

// ---- stores ----

/// PostgreSQL settings for annals, in `schema` (dropped and created anew).
pub(crate) fn fresh_postgres(schema: &str) -> Res<PostgresConfig> {
    let mut client = crate::pg_config()?.connect(postgres::NoTls)?;
    client.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))?;
    checkpoint(&mut client);
    let (dbname, host, port, user) = crate::pg_settings().ok_or("POSTGRES_DBNAME")?;
    let mut c = PostgresConfig::new(dbname);
    c.host = host;
    c.port = port;
    c.user = user;
    c.schema = Some(schema.to_owned());
    Ok(c)
}

/// Writes PostgreSQL's dirty pages out now, so the next run does not pay
/// for the last one's writes (a server checkpoint during a run slowed it,
/// and UmaDB's and SQLite's fsyncs beside it, several times over). Needs
/// superuser or `pg_checkpoint`; without them it is skipped.
fn checkpoint(client: &mut postgres::Client) {
    if let Err(e) = client.batch_execute("CHECKPOINT") {
        eprintln!("CHECKPOINT refused ({e}): runs may pay for each other's writes");
    }
}

/// A checkpoint of the PostgreSQL server, when one is configured.
fn checkpoint_server() {
    if crate::pg_settings().is_some() {
        if let Ok(mut client) = crate::pg_config().and_then(|c| Ok(c.connect(postgres::NoTls)?)) {
            checkpoint(&mut client);
        }
    }
}

/// Events in Python's table in `schema`.
fn count_python_events(schema: &str) -> Res<u64> {
    let mut client = crate::pg_config()?.connect(postgres::NoTls)?;
    let n: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.enrolment_events_tt_main"),
            &[],
        )?
        .get(0);
    Ok(n as u64)
}

/// `tests/python` of the workspace, where Python's enrolment lives.
fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python")
}

/// Python's speedrun on PostgreSQL (`postgres_tt`) in a fresh schema.
fn python_run(seconds: f64) -> Res<Run> {
    let schema = "bench_enrolment_python";
    fresh_postgres(schema)?;
    let (dbname, host, port, user) = crate::pg_settings().ok_or("POSTGRES_DBNAME")?;
    let python = python().ok_or("ANNALS_PYTHON is not set")?;
    let out = Command::new(python)
        .arg("enrolment_cli.py")
        .arg("speedrun")
        .arg(seconds.to_string())
        .current_dir(python_dir())
        .env("PERSISTENCE_MODULE", "eventsourcing.dcb.postgres_tt")
        .env("POSTGRES_DBNAME", dbname)
        .env("POSTGRES_HOST", host)
        .env("POSTGRES_PORT", port.to_string())
        .env("POSTGRES_USER", user)
        // Python's factory insists on a password, empty or not.
        .env(
            "POSTGRES_PASSWORD",
            std::env::var("POSTGRES_PASSWORD").unwrap_or_default(),
        )
        .env("POSTGRES_SCHEMA", schema)
        .env("PGOPTIONS", format!("-c search_path={schema},public"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return fail(format!("Python's speedrun failed ({})", out.status));
    }
    let run: Run = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "Python's speedrun printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if run.ops == 0 || !run.ops.is_multiple_of(OPS_PER_ITERATION) {
        return fail(format!("Python's speedrun did {} operations", run.ops));
    }
    let stored = count_python_events(schema)?;
    if stored != run.ops {
        return fail(format!(
            "Python's speedrun did {} operations but stored {stored} events",
            run.ops
        ));
    }
    Ok(run)
}

/// Runs configuration `config` for `seconds` (in the child process).
pub(crate) fn child(config: &str, seconds: f64) -> Res<Run> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("enrolment.db");
    let db = db.to_str().ok_or("temporary path is not UTF-8")?.to_owned();
    match config {
        "agg-sqlite" => speedrun(
            &mut Aggregates {
                app: Application::builder("Enrolment").sqlite(db).build()?,
            },
            seconds,
        ),
        "agg-postgres" => {
            let c = fresh_postgres("bench_enrolment_agg")?;
            speedrun(
                &mut Aggregates {
                    app: Application::builder("Enrolment").postgres(c).build()?,
                },
                seconds,
            )
        }
        "dcb-sqlite" => {
            let recorder = Arc::new(SqliteDcbRecorder::open(SqliteConfig::new(db))?);
            speedrun(&mut Dcb::new(recorder, true), seconds)
        }
        "dcb-postgres" => {
            let c = fresh_postgres("bench_enrolment_dcb")?;
            let recorder = Arc::new(PostgresDcbRecorder::open(&c, Courses::NAME)?);
            speedrun(&mut Dcb::new(recorder, true), seconds)
        }
        "dcb-umadb" => {
            let uri = umadb_uri().ok_or("no UmaDB")?;
            let recorder = Arc::new(UmaDbRecorder::open(&UmaDbConfig::new(&uri))?);
            speedrun(&mut Dcb::new(recorder, false), seconds)
        }
        "umadb-raw" => {
            let uri = umadb_config_uri()?;
            speedrun(&mut RawUmaDb::connect(uri)?, seconds)
        }
        "python-postgres_tt" => python_run(seconds),
        other => fail(format!("unknown enrolment configuration {other:?}")),
    }
}

/// The server's URI as annals' UmaDB store writes it (`http://` added).
fn umadb_config_uri() -> Res<String> {
    Ok(UmaDbConfig::new(&umadb_uri().ok_or("no UmaDB")?).uri)
}

/// One configuration's runs.
#[derive(Debug)]
struct Rows {
    config: &'static str,
    runs: Vec<Run>,
}

/// The ratios the issue sets targets for: (numerator, denominator,
/// target).
const RATIOS: [(&str, &str, f64); 3] = [
    ("dcb-postgres", "python-postgres_tt", 3.0),
    ("dcb-umadb", "umadb-raw", 0.9),
    ("dcb-sqlite", "agg-sqlite", 0.0),
];

/// Runs the speedrun for `seconds` per configuration in `wanted` (all
/// when empty), `rounds` times each in a fresh process, and prints ops/s
/// (median over rounds) and the ratios. Returns the runs, for `--quick`
/// to check.
pub(crate) fn run(seconds: f64, rounds: usize, wanted: &[String]) -> Res<()> {
    for w in wanted {
        if !CONFIGS.contains(&w.as_str()) {
            return fail(format!(
                "unknown enrolment configuration {w:?} (one of {CONFIGS:?})"
            ));
        }
    }
    let mut rows = Vec::new();
    for config in CONFIGS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == config) {
            continue;
        }
        match skipped(config) {
            Some(why) => println!("SKIPPED {config}: {why}"),
            None => rows.push(Rows {
                config,
                runs: Vec::new(),
            }),
        }
    }
    let exe = std::env::current_exe()?;
    let out_dir = tempfile::tempdir()?;
    for round in 0..rounds {
        // Every other round in reverse: no configuration always follows
        // the same one.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).rev().collect()
        };
        for k in order {
            let config = rows[k].config;
            eprintln!("enrolment round {}/{rounds}: {config}", round + 1);
            checkpoint_server();
            let out = out_dir.path().join(format!("{round}-{k}.json"));
            let status = Command::new(&exe)
                .arg("--enrolment-child")
                .arg(config)
                .arg("--enrolment")
                .arg(seconds.to_string())
                .arg("--child-out")
                .arg(&out)
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                return fail(format!("enrolment {config} failed ({status})"));
            }
            let run: Run = serde_json::from_slice(&std::fs::read(&out)?)?;
            if run.ops == 0 {
                return fail(format!("enrolment {config} did no operation"));
            }
            rows[k].runs.push(run);
        }
    }
    println!(
        "enrolment speedrun: {seconds} s per run, {rounds} round(s), each run in a fresh process; 120 ops per iteration"
    );
    println!("| configuration | ops/s (median) | per round |");
    println!("|---|---|---|");
    let medians: Vec<Option<f64>> = rows
        .iter()
        .map(|r| crate::median(r.runs.iter().map(Run::per_second).collect()))
        .collect();
    for (r, m) in rows.iter().zip(&medians) {
        let rounds: Vec<String> = r
            .runs
            .iter()
            .map(|run| format!("{:.0}", run.per_second()))
            .collect();
        println!(
            "| {} | {} | {} |",
            r.config,
            m.map_or("–".into(), |m| format!("{m:.0}")),
            rounds.join(", ")
        );
    }
    let find = |name: &str| rows.iter().position(|r| r.config == name);
    let mut header = false;
    for (a, b, target) in RATIOS {
        let (Some(i), Some(j)) = (find(a), find(b)) else {
            continue;
        };
        if !header {
            println!("\n| ratio | median of per-round ratios | target |");
            println!("|---|---|---|");
            header = true;
        }
        let per_round: Vec<f64> = rows[i]
            .runs
            .iter()
            .zip(&rows[j].runs)
            .map(|(x, y)| x.per_second() / y.per_second())
            .collect();
        let ratio = crate::median(per_round).unwrap_or(f64::NAN);
        let target = if target > 0.0 {
            format!(
                ">= {target}x: {}",
                if ratio >= target { "met" } else { "MISSED" }
            )
        } else {
            "–".to_owned()
        };
        println!("| {a} / {b} | {ratio:.2}x | {target} |");
    }
    Ok(())
}
