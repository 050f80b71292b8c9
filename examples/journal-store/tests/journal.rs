//! The journal store, a store written outside annals, does what a
//! built-in store does: the contract suite, selection by
//! `PERSISTENCE_MODULE`, and its transaction lent to the user's writes.

use std::sync::Arc;

use annals::env::Env;
use annals::persistence::{Modules, Store, StoreTx};
use annals::prelude::*;
use annals::system::{Policies, ProcessApplication};
use annals_journal_store::{Journal, JournalRecorder, JournalStore, NAME};

annals::recorder_contract!(|_test| Some(Arc::new(JournalRecorder::new())));

/// A dog, saved on the journal store.
#[aggregate]
#[derive(Debug)]
pub struct Dog {
    /// Its name.
    pub name: String,
}

#[aggregate]
impl Dog {
    /// A new dog.
    #[event("Registered")]
    pub fn register(name: String) -> Self {
        Dog { name }
    }

    /// A new name.
    #[event("Renamed")]
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }
}

/// An application on a new journal store, and the store.
fn app(name: &str) -> (Application, JournalStore) {
    let store = JournalStore::new();
    let app = Application::builder(name)
        .store(store.clone())
        .build()
        .expect("an application on the journal store");
    (app, store)
}

/// Writes `line` in the save's transaction.
fn write(line: &'static str) -> impl FnMut(&mut StoreTx<'_>) -> annals::Result<()> {
    move |tx| {
        tx.get_mut::<Journal>()?.write(line);
        Ok(())
    }
}

#[test]
fn persistence_module_selects_the_registered_store() {
    let modules = Modules::new()
        .with(NAME, |env: &Env| {
            Ok(Arc::new(JournalStore::from_env(env)?) as Arc<dyn Store>)
        })
        .expect("a free name");
    let env = Env::from_map("Kennel", [("PERSISTENCE_MODULE", NAME)]);
    let app = Application::builder("Kennel")
        .modules(modules)
        .with_env(&env)
        .expect("settings")
        .build()
        .expect("build");
    let mut dog = Dog::register("Fido".into());
    // Only a store that lends a journal accepts these writes: the memory
    // store (the default) would refuse them.
    app.save_and_write(&mut dog, write("Fido registered"))
        .expect("saved on the journal store");
    assert_eq!(app.get::<Dog>(dog.id()).expect("get").name, "Fido");
}

#[test]
fn save_and_write_stores_the_events_and_the_lines_together() {
    let (app, store) = app("Kennel");
    let mut dog = Dog::register("Fido".into());
    app.save_and_write(&mut dog, write("Fido registered"))
        .expect("save");
    assert_eq!(store.recorder().journal(), ["Fido registered"]);
    assert_eq!(app.get::<Dog>(dog.id()).expect("get").version(), 1);
}

#[test]
fn failed_writes_store_neither_the_events_nor_the_lines() {
    let (app, store) = app("Kennel");
    let mut dog = Dog::register("Fido".into());
    let err = app
        .save_and_write(&mut dog, |tx| {
            tx.get_mut::<Journal>()?.write("half a save");
            Err(annals::Error::user("the writes refuse"))
        })
        .expect_err("the writes failed");
    assert!(err.to_string().contains("the writes refuse"), "{err}");
    assert!(store.recorder().journal().is_empty());
    assert!(app.get::<Dog>(dog.id()).is_err(), "no event stored");
    // The pending event is kept: saving again stores it.
    app.save_and_write(&mut dog, write("Fido registered"))
        .expect("save again");
    assert_eq!(store.recorder().journal(), ["Fido registered"]);
}

#[test]
fn a_conflict_comes_before_the_writes() {
    let (app, store) = app("Kennel");
    let mut dog = Dog::register("Fido".into());
    app.save(&mut dog).expect("save");
    let mut a: Dog = app.get(dog.id()).expect("a");
    let mut b: Dog = app.get(dog.id()).expect("b");
    a.rename("Rex".into());
    b.rename("Max".into());
    app.save(&mut a).expect("a first");
    let err = app
        .save_and_write(&mut b, write("never written"))
        .expect_err("b is stale");
    assert!(matches!(err, annals::Error::Conflict { .. }), "{err}");
    assert!(store.recorder().journal().is_empty());
}

#[test]
fn a_process_application_writes_its_lines_once_with_its_tracking() {
    let leader = Arc::new(Application::builder("Leader").build().expect("leader"));
    let (follower, store) = app("Follower");
    let policy = Policies::new().on::<Dog>(|registered, processing| {
        let DogEvent::Registered { name } = registered.event.clone() else {
            return Ok(());
        };
        processing.write(move |tx| {
            tx.get_mut::<Journal>()?.write(format!("saw {name}"));
            Ok(())
        });
        Ok(())
    });
    let process = ProcessApplication::new(Arc::new(follower), policy);
    for name in ["Fido", "Rex"] {
        leader
            .save(&mut Dog::register(name.into()))
            .expect("leader");
    }
    assert_eq!(process.pull(&leader, 10).expect("pull"), 2);
    assert_eq!(process.pull(&leader, 10).expect("again"), 0, "each once");
    assert_eq!(store.recorder().journal(), ["saw Fido", "saw Rex"]);
}
