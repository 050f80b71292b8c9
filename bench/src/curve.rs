//! The cost of a conditional append as the store grows: a DCB store
//! (SQLite, PostgreSQL) is filled to each size with enrolment-shaped
//! events (per 120: 10 courses, 10 students, 100 joins, every id fresh),
//! then joins are timed one by one: the read of the course's and the
//! student's boundary (two query items, by tag and type, as the courses
//! example reads), then the append of `StudentJoinedCourse` on the
//! condition that nothing in that boundary changed since the read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::dcb::{Boundary, DcbEvents};
use annals::persistence::dcb::{DcbAppendCondition, DcbEvent, DcbQuery, DcbQueryItem, DcbRecorder};
use annals::persistence::postgres::PostgresDcbRecorder;
use annals::persistence::sqlite::{SqliteConfig, SqliteDcbRecorder};
use annals_examples::courses::{
    Course, CourseEvent, CourseId, CourseRegistered, Student, StudentId, StudentJoinedCourse,
    StudentRegistered, COURSE_TOPIC, STUDENT_TOPIC,
};

use crate::enrolment::head;
use crate::workload::{fail, Res};

/// Events appended per batch while filling.
const BATCH: usize = 12_000;

/// One iteration's events: 10 courses, 10 students, every student joins
/// every course (120 events).
fn iteration(out: &mut Vec<DcbEvent>) -> Res<()> {
    let courses: Vec<CourseId> = (0..10).map(|_| CourseId::new()).collect();
    let students: Vec<StudentId> = (0..10).map(|_| StudentId::new()).collect();
    for (i, course_id) in courses.iter().enumerate() {
        out.push(annals::dcb::encode(&CourseRegistered {
            originator_topic: COURSE_TOPIC.to_owned(),
            course_id: *course_id,
            name: format!("course-{i}"),
            places: 10,
        })?);
    }
    for (i, student_id) in students.iter().enumerate() {
        out.push(annals::dcb::encode(&StudentRegistered {
            originator_topic: STUDENT_TOPIC.to_owned(),
            student_id: *student_id,
            name: format!("student-{i}"),
            max_courses: 10,
        })?);
    }
    for course_id in &courses {
        for student_id in &students {
            out.push(annals::dcb::encode(&StudentJoinedCourse {
                student_id: *student_id,
                course_id: *course_id,
            })?);
        }
    }
    Ok(())
}

/// Appends enrolment-shaped events until the store holds `size` (in
/// batches, unconditionally).
fn fill(recorder: &dyn DcbRecorder, from: u64, size: u64) -> Res<u64> {
    let mut have = from;
    let mut batch = Vec::with_capacity(BATCH + 120);
    while have < size {
        batch.clear();
        while batch.len() < BATCH && have + (batch.len() as u64) < size {
            iteration(&mut batch)?;
        }
        batch.truncate(usize::try_from(size - have)?);
        recorder.append(&batch, None)?;
        have += batch.len() as u64;
    }
    Ok(have)
}

/// What the joins at one size cost, in microseconds (medians).
#[derive(Debug, Clone, Copy)]
struct Point {
    read: f64,
    append: f64,
    join: f64,
    p90: f64,
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// Times `joins` joins (a multiple of 100) on fresh courses and students,
/// registered first (untimed); checks them afterwards.
fn measure(recorder: &dyn DcbRecorder, joins: usize) -> Res<(Point, u64)> {
    let mut reads = Vec::with_capacity(joins);
    let mut appends = Vec::with_capacity(joins);
    let mut totals = Vec::with_capacity(joins);
    let mut appended = 0u64;
    for _ in 0..joins.div_ceil(100) {
        let courses: Vec<CourseId> = (0..10).map(|_| CourseId::new()).collect();
        let students: Vec<StudentId> = (0..10).map(|_| StudentId::new()).collect();
        let mut registrations = Vec::new();
        for c in &courses {
            registrations.push(annals::dcb::encode(&CourseRegistered {
                originator_topic: COURSE_TOPIC.to_owned(),
                course_id: *c,
                name: "c".into(),
                places: 10,
            })?);
        }
        for s in &students {
            registrations.push(annals::dcb::encode(&StudentRegistered {
                originator_topic: STUDENT_TOPIC.to_owned(),
                student_id: *s,
                name: "s".into(),
                max_courses: 10,
            })?);
        }
        recorder.append(&registrations, None)?;
        appended += registrations.len() as u64;
        for c in &courses {
            for s in &students {
                let query = (Course::new(*c), Student::new(*s)).query();
                let event = annals::dcb::encode(&StudentJoinedCourse {
                    student_id: *s,
                    course_id: *c,
                })?;
                let started = Instant::now();
                let read = recorder.read(&query, None, None)?;
                let between = Instant::now();
                let condition = DcbAppendCondition::new(query).after(read.head);
                recorder.append(&[event], Some(&condition))?;
                let done = Instant::now();
                appended += 1;
                reads.push(between - started);
                appends.push(done - between);
                totals.push(done - started);
            }
        }
        // Each course has its 10 students (checked outside the timing).
        for c in &courses {
            let joined = DcbQuery::item(
                DcbQueryItem::new()
                    .types(CourseEvent::TYPES.iter().copied())
                    .tags([c.to_string()]),
            );
            let n = recorder.read(&joined, None, None)?.events.len();
            if n != 11 {
                return fail(format!("a course's boundary has {n} events, expected 11"));
            }
        }
    }
    let mut sorted = totals.clone();
    sorted.sort();
    let p90 = sorted[(sorted.len() - 1) * 9 / 10].as_secs_f64() * 1e6;
    Ok((
        Point {
            read: median_us(reads),
            append: median_us(appends),
            join: median_us(totals),
            p90,
        },
        appended,
    ))
}

/// Fills each store to each of `sizes` in turn, times `joins` joins at
/// each, and prints the curve.
pub(crate) fn run(sizes: &[u64], joins: usize, postgres: bool) -> Res<()> {
    let joins = joins.max(100).div_ceil(100) * 100;
    println!(
        "conditional append cost vs store size ({joins} joins per size; medians in µs; read = the boundary of a course and a student, append = StudentJoinedCourse on the condition)"
    );
    println!("| store | events | read µs | append µs | join µs | join p90 µs | fill s |");
    println!("|---|---|---|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("curve.db");
    let sqlite: Arc<dyn DcbRecorder> = Arc::new(SqliteDcbRecorder::open(SqliteConfig::new(
        path.to_str().ok_or("temporary path is not UTF-8")?,
    ))?);
    curve("sqlite", sqlite.as_ref(), sizes, joins, || Ok(()))?;
    drop(sqlite);
    if postgres {
        let schema = "bench_curve";
        let config = crate::enrolment::fresh_postgres(schema)?;
        let pg = PostgresDcbRecorder::open(&config, "Curve")?;
        let analyze = || -> Res<()> {
            let mut client = crate::pg_config()?.connect(postgres::NoTls)?;
            // Statistics for the planner, and the fill's dirty pages
            // written out, so the joins time the steady state, not the
            // bulk load's checkpoint (its full-page writes slowed the
            // first appends after a fill several times over).
            client.batch_execute(&format!(
                "ANALYZE {schema}.curve_events_tt_main; ANALYZE {schema}.curve_events_tt_tag; CHECKPOINT"
            ))?;
            Ok(())
        };
        curve("postgres", &pg, sizes, joins, analyze)?;
    }
    Ok(())
}

fn curve(
    store: &str,
    recorder: &dyn DcbRecorder,
    sizes: &[u64],
    joins: usize,
    after_fill: impl Fn() -> Res<()>,
) -> Res<()> {
    let mut have = 0u64;
    for &size in sizes {
        let started = Instant::now();
        if size > have {
            have = fill(recorder, have, size)?;
        }
        after_fill()?;
        let filled = started.elapsed().as_secs_f64();
        let (point, appended) = measure(recorder, joins)?;
        have += appended;
        let stored = head(recorder)?;
        if stored != have {
            return fail(format!("{store}: {stored} events stored, expected {have}"));
        }
        println!(
            "| {store} | {size} | {:.0} | {:.0} | {:.0} | {:.0} | {filled:.1} |",
            point.read, point.append, point.join, point.p90
        );
    }
    Ok(())
}
