//! Registers dogs, teaches them tricks (one rejected by validation) and
//! reads them back. `cargo run --example dog_school`

use annals_examples::dog_school::{SchoolError, TrainingSchool, TrickError};

fn main() -> Result<(), SchoolError> {
    let school = TrainingSchool::new()?;

    let fido = school.register("Fido")?;
    school.add_trick(fido, "roll over")?;
    school.add_trick(fido, "play dead")?;

    // Validation: a dog cannot learn a trick twice; nothing is recorded.
    match school.add_trick(fido, "roll over") {
        Err(SchoolError::Trick(e @ TrickError::AlreadyKnown { .. })) => println!("rejected: {e}"),
        other => panic!("expected the trick to be rejected, got {other:?}"),
    }

    let dog = school.dog(fido)?;
    assert_eq!(dog.tricks, ["roll over", "play dead"]);
    println!("{} ({fido}) knows {:?}", dog.name, dog.tricks);
    Ok(())
}
