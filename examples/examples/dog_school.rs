//! The dog school: registers Fido, teaches a trick (one rejected by
//! validation) and reads Fido back.
//!
//! `cargo run --example dog_school` keeps the school in the SQLite file
//! `dog_school.db`: run it twice and the second run finds the first run's
//! dog and tricks. When `PERSISTENCE_MODULE` (or
//! `TRAININGSCHOOL_PERSISTENCE_MODULE`) is set, the environment decides,
//! e.g. PostgreSQL:
//!
//! ```sh
//! PERSISTENCE_MODULE=postgres POSTGRES_DBNAME=test POSTGRES_HOST=127.0.0.1 \
//!     POSTGRES_USER=postgres cargo run --example dog_school
//! ```

use annals::env::Env;
use annals::prelude::*;
use annals::settings;
use annals_examples::dog_school::{Dog, SchoolError, TrainingSchool, TrickError};

const TRICKS: [&str; 5] = ["roll over", "play dead", "sit", "fetch", "shake hands"];

fn main() -> Result<(), SchoolError> {
    annals_examples::init_tracing();
    let configured = Env::from_process("TrainingSchool")
        .get(settings::PERSISTENCE_MODULE.name)
        .is_some();
    let school = if configured {
        TrainingSchool::new()?
    } else {
        TrainingSchool::open("dog_school.db")?
    };

    let fido = Dog::create_id("Fido");
    if school.contains(fido)? {
        let dog = school.dog(fido)?;
        println!(
            "Fido is back from an earlier run and knows {:?}",
            dog.tricks
        );
    } else {
        assert_eq!(school.register("Fido")?, fido);
        println!("registered Fido ({fido})");
    }

    // Teach the first trick Fido does not know yet.
    let known = school.dog(fido)?.tricks;
    match TRICKS.iter().find(|t| !known.iter().any(|k| k == *t)) {
        Some(trick) => {
            school.add_trick(fido, trick)?;
            println!("taught Fido to {trick}");
        }
        None => println!("Fido knows every trick there is"),
    }

    // Validation: a dog cannot learn a trick twice; nothing is recorded.
    let version = school.dog(fido)?.version();
    match school.add_trick(fido, TRICKS[0]) {
        Err(SchoolError::Trick(e @ TrickError::AlreadyKnown { .. })) => println!("rejected: {e}"),
        other => panic!("expected the trick to be rejected, got {other:?}"),
    }

    let dog = school.dog(fido)?;
    assert_eq!(dog.version(), version, "a rejected command stores nothing");
    assert!(dog.tricks.iter().any(|t| t == TRICKS[0]));
    println!(
        "{} (version {}) knows {:?}",
        dog.name,
        dog.version(),
        dog.tricks
    );
    Ok(())
}
