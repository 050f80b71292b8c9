//! Creates a world, makes things so, and reads its history back.
//! `cargo run --example world`

use annals::prelude::*;
use annals_examples::world::World;

fn main() -> annals::Result<()> {
    let app = Application::new("Worlds")?;

    let mut world = World::create();
    for what in ["dinosaurs", "trucks", "internet", "annals"] {
        world.make_it_so(what.to_owned());
    }
    app.save(&mut world)?;

    let copy: World = app.repository().get(world.id())?;
    assert_eq!(copy.history, ["dinosaurs", "trucks", "internet", "annals"]);
    assert_eq!(copy.version(), 5);
    println!(
        "world {} at version {}: {:?}",
        copy.id(),
        copy.version(),
        copy.history
    );
    Ok(())
}
