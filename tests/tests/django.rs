//! One database shared with a real Django project (`tests/django/`:
//! eventsourcing_django 0.6 and the eventsourcing 9.4 it requires, in the
//! venv `.ci/django` makes; `ANNALS_DJANGO_PYTHON` names its interpreter):
//! the TrainingSchool of `tests/python/dogschool.py` run by Django on
//! eventsourcing_django's tables, and annals' on the same tables
//! (`DJANGO_TABLES=yes`). Django writes and annals reads, annals writes
//! and Django reads, both write at once; Django's Counters follows what
//! annals wrote and annals' follows what Django wrote, each exactly once,
//! brought up to date by `manage.py sync_followers` and by annals'
//! `System::sync_followers`.

use std::path::PathBuf;
use std::sync::Arc;

use annals::env::Env;
use annals::prelude::*;
use annals::system::{SyncOptions, System};
use annals_tests::dogschool::{counting_tricks, Counter, Dog};
use annals_tests::stores::{mysql_client, mysql_server, postgres_client, postgres_server};
use serde_json::Value;

/// The Django venv's interpreter, or `None` (said, and a failure in CI).
fn python() -> Option<PathBuf> {
    annals_tests::python::interpreter("ANNALS_DJANGO_PYTHON", "the Django tests")
}

/// The Django project.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/django");

/// One database that a Django project and annals share: the settings of
/// each side.
struct Project {
    python: PathBuf,
    /// The Django project's environment (its database, the applications'
    /// settings).
    django: Vec<(String, String)>,
    /// annals' settings for the same database and tables.
    annals: Vec<(String, String)>,
}

/// What both sides' applications share besides the store.
fn common() -> Vec<(String, String)> {
    vec![("IS_SNAPSHOTTING_ENABLED".into(), "yes".into())]
}

impl Project {
    /// On PostgreSQL, in a schema of its own (`name`), made afresh.
    fn postgres(name: &str) -> Option<Self> {
        let python = python()?;
        let Some(server) = postgres_server() else {
            annals_tests::skipped("Django on PostgreSQL (set POSTGRES_DBNAME)");
            return None;
        };
        let mut client = postgres_client(&server);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE; CREATE SCHEMA \"{name}\""
            ))
            .expect("a fresh schema");
        let mut django = vec![
            ("ANNALS_DJANGO_DB".into(), "postgres".into()),
            ("DJANGO_DB_NAME".into(), server.dbname.clone()),
            ("DJANGO_DB_HOST".into(), server.host.clone()),
            ("DJANGO_DB_PORT".into(), server.port.to_string()),
            ("DJANGO_DB_USER".into(), server.user.clone()),
            (
                "DJANGO_DB_PASSWORD".into(),
                server.password.clone().unwrap_or_default(),
            ),
            ("DJANGO_DB_SCHEMA".into(), name.into()),
            ("PERSISTENCE_MODULE".into(), "eventsourcing_django".into()),
        ];
        django.extend(common());
        let mut annals = vec![
            ("PERSISTENCE_MODULE".into(), "postgres".into()),
            ("POSTGRES_DBNAME".into(), server.dbname.clone()),
            ("POSTGRES_HOST".into(), server.host.clone()),
            ("POSTGRES_PORT".into(), server.port.to_string()),
            ("POSTGRES_USER".into(), server.user.clone()),
            (
                "POSTGRES_PASSWORD".into(),
                server.password.clone().unwrap_or_default(),
            ),
            ("POSTGRES_SCHEMA".into(), name.into()),
        ];
        annals.extend(common());
        Some(Self::migrated(python, django, annals))
    }

    /// On MariaDB/MySQL, in a database of its own (`name`), made afresh.
    fn mysql(name: &str) -> Option<Self> {
        use annals::mysql::prelude::Queryable as _;
        let python = python()?;
        let Some(server) = mysql_server() else {
            annals_tests::skipped("Django on MariaDB (set MYSQL_DBNAME)");
            return None;
        };
        mysql_client(&server)
            .query_drop(format!(
                "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"
            ))
            .expect("a fresh database");
        let password = server.password.clone().unwrap_or_default();
        let mut django = vec![
            ("ANNALS_DJANGO_DB".into(), "mysql".into()),
            ("DJANGO_DB_NAME".into(), name.into()),
            ("DJANGO_DB_HOST".into(), server.host.clone()),
            ("DJANGO_DB_PORT".into(), server.port.to_string()),
            ("DJANGO_DB_USER".into(), server.user.clone()),
            ("DJANGO_DB_PASSWORD".into(), password.clone()),
            ("PERSISTENCE_MODULE".into(), "eventsourcing_django".into()),
        ];
        django.extend(common());
        let mut annals = vec![
            ("PERSISTENCE_MODULE".into(), "mysql".into()),
            ("MYSQL_DBNAME".into(), name.into()),
            ("MYSQL_HOST".into(), server.host.clone()),
            ("MYSQL_PORT".into(), server.port.to_string()),
            ("MYSQL_USER".into(), server.user.clone()),
            ("MYSQL_PASSWORD".into(), password),
        ];
        annals.extend(common());
        Some(Self::migrated(python, django, annals))
    }

    /// On SQLite, in a new file.
    fn sqlite() -> Option<Self> {
        let python = python()?;
        let file = annals_tests::stores::temp_dir()
            .join("django.sqlite3")
            .to_string_lossy()
            .into_owned();
        let mut django = vec![
            ("ANNALS_DJANGO_DB".into(), "sqlite".into()),
            ("DJANGO_DB_NAME".into(), file.clone()),
            ("PERSISTENCE_MODULE".into(), "eventsourcing_django".into()),
        ];
        django.extend(common());
        let mut annals = vec![
            ("PERSISTENCE_MODULE".into(), "sqlite".into()),
            ("SQLITE_DBNAME".into(), file),
        ];
        annals.extend(common());
        Some(Self::migrated(python, django, annals))
    }

    fn migrated(
        python: PathBuf,
        django: Vec<(String, String)>,
        mut annals: Vec<(String, String)>,
    ) -> Self {
        annals.extend([
            ("DJANGO_TABLES".into(), "yes".into()),
            ("CODEC".into(), "python".into()),
        ]);
        let project = Self {
            python,
            django,
            annals,
        };
        let migrated = project.manage(&["migrate", "eventsourcing_django"]);
        assert!(migrated.contains("eventsourcing_django"), "{migrated}");
        project
    }

    /// `python manage.py ARGS`: its standard output.
    fn manage(&self, args: &[&str]) -> String {
        let output = annals_tests::python::run(&self.python, DIR, "manage.py", args, &self.django);
        assert!(
            output.status.success(),
            "manage.py {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `python django_interop.py ARGS`: the JSON it prints.
    fn py(&self, args: &[&str]) -> Value {
        annals_tests::python::json(&self.python, DIR, "django_interop.py", args, &self.django)
    }

    fn env(&self, name: &str) -> Env {
        Env::from_map(
            name,
            self.annals.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// annals' application `name` on the project's tables.
    fn app(&self, name: &str) -> Application {
        Application::builder(name)
            .with_env(&self.env(name))
            .and_then(|b| b.snapshot_every::<Dog>(3).build())
            .unwrap_or_else(|e| panic!("the annals {name}: {}", e.report()))
    }
}

/// The log as the Python side lists it: id, topic, originator id and
/// version.
fn annals_log(app: &Application) -> Vec<Value> {
    app.notifications(1, 10_000)
        .expect("the log")
        .iter()
        .map(|n| {
            serde_json::json!([
                n.id,
                n.event.topic,
                Uuid::parse_str(&n.event.originator_id)
                    .expect("a UUID id")
                    .to_string(),
                n.event.originator_version
            ])
        })
        .collect()
}

fn the_story(project: &Project) {
    let school = project.app("TrainingSchool");
    let owner = Uuid::new_v4();

    // Django writes; annals reads (from Django's snapshot at version 3).
    let fido = project.py(&["register", "Fido", &owner.to_string(), "sit", "roll", "beg"]);
    let fido = Uuid::parse_str(fido.as_str().expect("an id")).expect("a UUID");
    let dog = school.get::<Dog>(fido).expect("annals reads Django's dog");
    assert_eq!((dog.name.as_str(), dog.owner), ("Fido", owner));
    assert_eq!((dog.tricks.len(), dog.version()), (3, 4));
    assert_eq!(
        school
            .snapshots()
            .expect("snapshots")
            .versions::<Dog>(fido)
            .expect("Django's snapshot"),
        [3]
    );

    // annals writes; Django reads.
    let mut rex = Dog::register("Rex".into(), owner);
    rex.add_trick("sit".into());
    school.save(&mut rex).expect("annals saves");
    let seen = project.py(&["get", &rex.id().to_string()]);
    let seen = &seen[rex.id().to_string()];
    assert_eq!(seen["name"], "Rex");
    assert_eq!(seen["owner"], owner.to_string());
    assert_eq!(seen["tricks"], serde_json::json!(["sit"]));
    assert_eq!(seen["version"], 2);

    // Both write at once: every save is stored once, in one log both
    // sides read alike.
    let writers = std::thread::scope(|s| {
        let django = s.spawn(|| project.py(&["register-many", "20", "py"]));
        let ours: Vec<Uuid> = (0..20)
            .map(|i| {
                let mut dog = Dog::register(format!("rs{i}"), owner);
                school.save(&mut dog).expect("a save");
                dog.id()
            })
            .collect();
        (django.join().expect("the Django writer"), ours)
    });
    let (theirs, ours) = writers;
    assert_eq!(theirs.as_array().map(Vec::len), Some(20));
    let log = annals_log(&school);
    assert_eq!(Value::Array(log.clone()), project.py(&["log"]));
    assert_eq!(log.len(), 4 + 2 + 40);
    let ids: Vec<u64> = log.iter().map(|n| n[0].as_u64().expect("an id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for id in &ours {
        assert_eq!(school.get::<Dog>(*id).expect("ours").version(), 1);
    }

    // Followers, each way, exactly once: Django's Counters counts what
    // annals wrote (Rex's sit) and annals' what Django wrote (Fido's).
    let counters = Arc::new(project.app("RustCounters"));
    let school = Arc::new(school);
    let system = System::builder()
        .application(school.clone())
        .process(counters.clone(), counting_tricks())
        .pipe([&school, &counters])
        .build()
        .expect("the system");
    for _ in 0..2 {
        let mut out = Vec::new();
        let report = system
            .sync_followers(&SyncOptions::default(), &mut out)
            .expect("annals' sync_followers");
        assert!(report.is_ok(), "{}", String::from_utf8_lossy(&out));
        let synced = project.manage(&["sync_followers"]);
        assert!(synced.contains("Counters"), "{synced}");
    }
    let sit = counters
        .get::<Counter>(Counter::create_id("sit"))
        .expect("annals counted sit");
    assert_eq!(sit.count, 2);
    assert_eq!(
        project.py(&["count", "sit", "roll", "beg"]),
        serde_json::json!({"sit": 2, "roll": 1, "beg": 1})
    );
    let last = school
        .last_notification_id()
        .expect("the log")
        .expect("not empty");
    assert_eq!(project.py(&["tracked"]), serde_json::json!(last));
    // What `annals followers` lists: the upstream annals' follower tracks
    // here, not the rows of Django's own follower (another application).
    assert_eq!(
        annals::persistence::ProcessRecorder::tracked_applications(&**counters.recorder())
            .expect("the names tracked"),
        ["TrainingSchool"]
    );

    // Django's migrations own the tables: annals does not make them.
    let refused = Application::builder("TrainingSchool")
        .with_env(&project.env("TrainingSchool"))
        .and_then(|b| b.migrate())
        .expect_err("migrate refuses");
    assert!(
        refused.to_string().contains("migrate eventsourcing_django"),
        "{refused}"
    );
}

#[test]
fn sqlite_shared_with_a_django_project() {
    if let Some(project) = Project::sqlite() {
        the_story(&project);
    }
}

#[test]
fn mariadb_shared_with_a_django_project() {
    if let Some(project) = Project::mysql("annals_django") {
        the_story(&project);
    }
}

#[test]
fn postgres_shared_with_a_django_project() {
    if let Some(project) = Project::postgres("annals_django") {
        the_story(&project);
    }
}

/// A database without eventsourcing_django's tables: opening the store is
/// an error naming the missing table and the migration that makes it,
/// and nothing is created.
#[test]
fn postgres_without_the_django_tables_is_an_error_naming_them() {
    let Some(server) = postgres_server() else {
        annals_tests::skipped("Django on PostgreSQL (set POSTGRES_DBNAME)");
        return;
    };
    let mut client = postgres_client(&server);
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS annals_no_django CASCADE; CREATE SCHEMA annals_no_django",
        )
        .expect("an empty schema");
    let env = Env::from_map(
        "TrainingSchool",
        [
            ("PERSISTENCE_MODULE", "postgres"),
            ("POSTGRES_DBNAME", server.dbname.as_str()),
            ("POSTGRES_HOST", server.host.as_str()),
            ("POSTGRES_PORT", &server.port.to_string()),
            ("POSTGRES_USER", server.user.as_str()),
            ("POSTGRES_SCHEMA", "annals_no_django"),
            ("DJANGO_TABLES", "yes"),
            ("CODEC", "python"),
        ],
    );
    let err = Application::builder("TrainingSchool")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect_err("no tables");
    let message = err.to_string();
    assert!(message.contains("stored_events"), "{message}");
    assert!(
        message.contains("manage.py migrate eventsourcing_django"),
        "{message}"
    );
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'annals_no_django'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(tables, 0);
}

/// The recorders on the project's tables, as eventsourcing_django's
/// refuse: a taken version and a tracked notification are conflicts (the
/// save's events not stored), saves racing for one version store it once,
/// snapshots are the application's rows, keys are refused.
fn the_recorders_refuse_as_the_package_does(project: &Project) {
    use annals::persistence::{EventQuery, Persistence, StoredEvent, Tracking};
    use annals::Error;
    let env = project.env("Racers");
    let recorders = Persistence::from_env(&env)
        .expect("the settings")
        .expect("a store")
        .open("Racers")
        .expect("the recorders");
    let events = recorders.events.clone();
    let event = |id: Uuid, version: u64| StoredEvent {
        originator_id: id.to_string(),
        originator_version: version,
        topic: "Racer.Moved".into(),
        state: vec![b'{', b'}'],
    };
    let racer = Uuid::new_v4();
    events.insert_events(&[event(racer, 1)]).expect("stored");
    let taken = events
        .insert_events(&[event(racer, 2), event(racer, 1)])
        .expect_err("version 1 is taken");
    assert!(matches!(taken, Error::Conflict { .. }), "{taken:?}");
    let stored = events
        .select_events(&racer.to_string(), &EventQuery::all())
        .expect("the stream");
    assert_eq!(stored.len(), 1, "the save stored nothing");

    // Tracking: a notification once.
    let tracking = Tracking {
        application_name: "Upstream".into(),
        notification_id: 5,
    };
    let follower = Uuid::new_v4();
    events
        .insert_events_tracked(&[event(follower, 1)], &tracking)
        .expect("tracked");
    let again = events
        .insert_events_tracked(&[event(follower, 2)], &tracking)
        .expect_err("tracked already");
    assert!(matches!(again, Error::Conflict { .. }), "{again:?}");
    assert_eq!(events.max_tracking_id("Upstream").expect("max"), 5);
    assert!(events.has_tracking_id("Upstream", 5).expect("has"));
    assert_eq!(
        events
            .select_events(&follower.to_string(), &EventQuery::all())
            .expect("the stream")
            .len(),
        1
    );

    // Racing saves: each version once, whoever wins.
    let shared = Uuid::new_v4();
    let won: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let events = events.clone();
                s.spawn(move || {
                    (1..=20)
                        .filter(|&v| {
                            let mine = Uuid::new_v4();
                            match events.insert_events(&[event(mine, 1), event(shared, v)]) {
                                Ok(_) => true,
                                Err(Error::Conflict { .. }) => false,
                                Err(e) => panic!("{e:?}"),
                            }
                        })
                        .count()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a thread"))
            .sum()
    });
    assert_eq!(won, 20);
    let stream = events
        .select_events(&shared.to_string(), &EventQuery::all())
        .expect("the stream");
    assert_eq!(stream.len(), 20);

    // Snapshots are the application's.
    recorders
        .snapshots
        .insert_events(&[event(racer, 1)])
        .expect("a snapshot");
    let other = Persistence::from_env(&project.env("Other"))
        .expect("the settings")
        .expect("a store")
        .open("Other")
        .expect("the recorders");
    assert!(other
        .snapshots
        .select_events(&racer.to_string(), &EventQuery::all())
        .expect("none")
        .is_empty());
    assert!(other
        .events
        .select_events(&racer.to_string(), &EventQuery::all())
        .expect("none")
        .is_empty());
    assert_eq!(
        recorders
            .snapshots
            .select_events(&racer.to_string(), &EventQuery::all())
            .expect("one")
            .len(),
        1
    );
}

#[test]
fn sqlite_recorders_refuse_as_the_package_does() {
    if let Some(project) = Project::sqlite() {
        the_recorders_refuse_as_the_package_does(&project);
    }
}

#[test]
fn mariadb_recorders_refuse_as_the_package_does() {
    if let Some(project) = Project::mysql("annals_django_refusals") {
        the_recorders_refuse_as_the_package_does(&project);
    }
}

#[test]
fn postgres_recorders_refuse_as_the_package_does() {
    if let Some(project) = Project::postgres("annals_django_refusals") {
        the_recorders_refuse_as_the_package_does(&project);
    }
}

/// Django's Python applications read what annals writes to their tables:
/// annals' own codec there is an error naming the setting, before any
/// table is touched.
#[test]
fn django_tables_need_the_python_codec() {
    let file = annals_tests::stores::temp_dir()
        .join("no-codec.sqlite3")
        .to_string_lossy()
        .into_owned();
    let env = Env::from_map(
        "TrainingSchool",
        [
            ("PERSISTENCE_MODULE", "sqlite"),
            ("SQLITE_DBNAME", file.as_str()),
            ("DJANGO_TABLES", "yes"),
        ],
    );
    let err = Application::builder("TrainingSchool")
        .with_env(&env)
        .and_then(|b| b.build())
        .expect_err("annals' own codec");
    match err {
        annals::Error::Config { setting, message } => {
            assert_eq!(setting, "DJANGO_TABLES");
            assert!(message.contains("CODEC=python"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!std::path::Path::new(&file).exists(), "nothing opened");
}
