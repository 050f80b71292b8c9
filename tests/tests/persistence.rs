//! Applications on durable stores, configured from the environment or in
//! code.

use annals::env::Env;
use annals::prelude::*;
use annals::Error;
use annals_examples::dog_school::Dog;

fn temp_path(name: &str) -> String {
    let dir = annals_tests::stores::temp_dir();
    dir.join(name).to_string_lossy().into_owned()
}

fn app_from(vars: &[(&str, &str)]) -> annals::Result<Application> {
    let env = Env::from_map("TrainingSchool", vars.iter().copied());
    Application::builder("TrainingSchool")
        .with_env(&env)?
        .build()
}

#[test]
fn an_application_on_sqlite_keeps_its_aggregates_across_restarts() {
    let path = temp_path("school.db");
    let vars = [
        ("PERSISTENCE_MODULE", "sqlite"),
        ("TRAININGSCHOOL_SQLITE_DBNAME", path.as_str()),
    ];
    let id = {
        let app = app_from(&vars).expect("app");
        let mut dog = Dog::register("Fido".into());
        dog.add_trick("sit".into());
        app.save(&mut dog).expect("save");
        dog.id()
    };
    let app = app_from(&vars).expect("reopened");
    let dog: Dog = app.repository().get(id).expect("get");
    assert_eq!(
        (dog.tricks.as_slice(), dog.version()),
        (&["sit".to_owned()][..], 2)
    );

    // The Python library's module name works too.
    let app = app_from(&[
        ("PERSISTENCE_MODULE", "eventsourcing.sqlite"),
        ("SQLITE_DBNAME", &path),
    ])
    .expect("app");
    assert!(app.repository().contains::<Dog>(id).expect("contains"));
}

#[test]
fn the_builder_configures_sqlite_in_code() {
    let path = temp_path("built.db");
    let app = Application::builder("School")
        .sqlite(&path)
        .build()
        .expect("app");
    let mut dog = Dog::register("Rex".into());
    app.save(&mut dog).expect("save");
    let again = Application::builder("School")
        .sqlite(&path)
        .build()
        .expect("app");
    assert_eq!(
        again.repository().get::<Dog>(dog.id()).expect("get").name,
        "Rex"
    );
}

#[test]
fn concurrent_saves_of_one_aggregate_on_sqlite_conflict_and_store_nothing() {
    let app = Application::builder("School")
        .sqlite(temp_path("conflict.db"))
        .build()
        .expect("app");
    let mut dog = Dog::register("Max".into());
    app.save(&mut dog).expect("save");
    let mut a: Dog = app.repository().get(dog.id()).expect("get");
    let mut b: Dog = app.repository().get(dog.id()).expect("get");
    a.add_trick("sit".into());
    b.add_trick("beg".into());
    let mut other = Dog::register("Bella".into());
    app.save(&mut a).expect("first wins");
    let err = app
        .save((&mut other, &mut b))
        .expect_err("second conflicts");
    assert!(err.is_conflict(), "{err}");
    assert!(
        !app.repository()
            .contains::<Dog>(other.id())
            .expect("contains"),
        "nothing of the failed save"
    );
    assert_eq!(
        app.repository().get::<Dog>(dog.id()).expect("get").tricks,
        ["sit"]
    );
}

#[test]
fn a_missing_or_bad_setting_names_the_variable() {
    let err = app_from(&[("PERSISTENCE_MODULE", "sqlite")]).expect_err("no dbname");
    assert!(matches!(err, Error::Config { .. }));
    assert!(err.to_string().contains("SQLITE_DBNAME"), "{err}");

    let err = app_from(&[
        ("PERSISTENCE_MODULE", "sqlite"),
        ("SQLITE_DBNAME", ":memory:"),
        ("TRAININGSCHOOL_SQLITE_LOCK_TIMEOUT", "ten"),
    ])
    .expect_err("bad timeout");
    assert!(
        err.to_string()
            .contains("TRAININGSCHOOL_SQLITE_LOCK_TIMEOUT"),
        "{err}"
    );

    let err =
        app_from(&[("TRAININGSCHOOL_PERSISTENCE_MODULE", "mongo")]).expect_err("unknown module");
    let message = err.to_string();
    assert!(
        message.contains("TRAININGSCHOOL_PERSISTENCE_MODULE") && message.contains("sqlite"),
        "{message}"
    );
}
