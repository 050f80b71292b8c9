//! Course subscriptions with dynamic consistency boundaries: courses with
//! a capacity, students with a maximum number of courses, a subscription
//! as one fact. Prints what happens and asserts the rules: a full course
//! refuses, a student at their maximum refuses, and of eight students
//! racing for three seats exactly three win.
//!
//! `cargo run --example courses` keeps the store in the SQLite file
//! `courses.db` (each run registers new courses and students). When
//! `PERSISTENCE_MODULE` (or `ENROLMENT_PERSISTENCE_MODULE`) is set, the
//! environment decides, e.g. PostgreSQL, in Python's `postgres_tt` tables
//! (`enrolment_events_tt_main`), the store of Python's `Enrolment` DCB
//! application (`tests/python/enrolment.py`):
//!
//! ```sh
//! PERSISTENCE_MODULE=postgres POSTGRES_DBNAME=test POSTGRES_HOST=127.0.0.1 \
//!     POSTGRES_USER=postgres cargo run --example courses
//! PERSISTENCE_MODULE=umadb UMADB_URI=http://127.0.0.1:50051 \
//!     cargo run --features umadb --example courses
//! ```

use std::error::Error;
use std::sync::{Arc, Barrier};

use annals::CommandError;
use annals_examples::courses::{Courses, SubscriptionError};

fn main() -> Result<(), Box<dyn Error>> {
    annals_examples::init_tracing();
    let courses = Courses::from_env("courses.db")?;

    let maths = courses.register_course("Maths", 2)?;
    let physics = courses.register_course("Physics", 2)?;
    let history = courses.register_course("History", 3)?;
    let ada = courses.register_student("Ada", 2)?;
    let bob = courses.register_student("Bob", 3)?;
    let cy = courses.register_student("Cy", 3)?;
    println!("registered Maths and Physics (2 seats each), History (3); Ada (2 courses at most), Bob and Cy (3)");

    courses.join(ada, maths)?;
    courses.join(ada, physics)?;
    println!("Ada joined Maths and Physics");
    match courses.join(ada, history) {
        Err(CommandError::Rejected(why @ SubscriptionError::TooManyCourses { .. })) => {
            println!("Ada cannot join History: {why}");
        }
        other => panic!("Ada is at her maximum, yet: {other:?}"),
    }

    courses.join(bob, maths)?;
    println!("Bob joined Maths");
    match courses.join(cy, maths) {
        Err(CommandError::Rejected(why @ SubscriptionError::CourseFull { .. })) => {
            println!("Cy cannot join Maths: {why}");
        }
        other => panic!("Maths is full, yet: {other:?}"),
    }
    assert!(matches!(
        courses.join(bob, maths),
        Err(CommandError::Rejected(SubscriptionError::AlreadyJoined))
    ));

    courses.leave(ada, physics)?;
    courses.join(ada, history)?;
    println!("Ada left Physics and joined History");

    let maths_now = courses.course(maths)?;
    assert_eq!(maths_now.students, [ada, bob]);
    let ada_now = courses.student(ada)?;
    assert_eq!(ada_now.courses, [maths, history]);
    println!(
        "Maths has {} students; Ada takes {} courses",
        maths_now.students.len(),
        ada_now.courses.len()
    );

    // Eight students race for Chemistry's three seats, each decision
    // reading the course's boundary and appending on its condition: the
    // losers of a race decide again, and find the course full.
    let chemistry = courses.register_course("Chemistry", 3)?;
    let racers = (0..8)
        .map(|i| courses.register_student(&format!("Racer {i}"), 1))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Arc::new(Barrier::new(racers.len()));
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = racers
            .iter()
            .map(|&racer| {
                let courses = courses.clone();
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    courses.join(racer, chemistry)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a racer panicked"))
            .collect()
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    let full = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(CommandError::Rejected(SubscriptionError::CourseFull { .. }))
            )
        })
        .count();
    assert_eq!((won, full), (3, 5), "{outcomes:?}");
    assert_eq!(courses.course(chemistry)?.students.len(), 3);
    println!("8 students raced for Chemistry's 3 seats: {won} joined, {full} found it full");
    Ok(())
}
