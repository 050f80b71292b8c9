//! The library's tracing spans: a subscriber that keeps every span's name
//! and fields (and every event's) sees what a save, a get and a
//! follower's pull did, and never a secret or a state's bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use annals::prelude::*;
use annals::system::{Policies, SingleThreadedRunner, System};
use annals::Metadata;
use annals_tests::dogs::{Dog, DogEvent};
use annals_tests::stores::every_store;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

#[aggregate]
#[derive(Debug)]
struct Kennel {
    #[expect(
        dead_code,
        reason = "state the events build; the test reads only the events"
    )]
    dog: String,
}

#[aggregate]
impl Kennel {
    #[event("Booked")]
    fn book(dog: String) -> Self {
        Kennel { dog }
    }
}

/// A closed span (or an event, named `event`): its name and fields, as
/// recorded (Debug form, strings without quotes).
#[derive(Debug, Clone)]
struct Captured {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Keeps every span's fields until it closes, then moves them to `closed`.
#[derive(Clone, Default)]
struct Capture {
    closed: Arc<Mutex<Vec<Captured>>>,
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<Captured> {
        let closed = self.closed.lock().expect("capture");
        closed.iter().filter(|s| s.name == name).cloned().collect()
    }

    /// Everything captured, as text: every name, field name and value.
    fn text(&self) -> String {
        format!("{:?}", self.closed.lock().expect("capture"))
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Captured {
                name: attrs.metadata().name().to_owned(),
                fields,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(captured) = span.extensions_mut().get_mut::<Captured>() {
                values.record(&mut Fields(&mut captured.fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.closed.lock().expect("capture").push(Captured {
            name: "event".to_owned(),
            fields,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(captured) = span.extensions_mut().remove::<Captured>() {
                self.closed.lock().expect("capture").push(captured);
            }
        }
    }
}

/// Runs `f` with a subscriber capturing every span and event of this
/// thread, at every level.
fn captured<T>(f: impl FnOnce() -> T) -> (T, Capture) {
    let capture = Capture::default();
    let subscriber = Registry::default().with(capture.clone());
    let value = tracing::subscriber::with_default(subscriber, f);
    (value, capture)
}

fn sqlite_file(dir: &tempfile::TempDir) -> String {
    dir.path().join("dogs.db").to_string_lossy().into_owned()
}

#[test]
fn a_save_has_a_span_with_the_aggregate_its_id_and_versions() {
    // Memory, a SQLite file, and PostgreSQL when configured.
    for (store, persistence) in every_store("TracedDogs") {
        let app = Application::builder("TracedDogs")
            .persistence(persistence)
            .build()
            .expect("app");
        let mut dog = Dog::register("Fido".into());
        dog.add_trick("sit".into());
        dog.add_trick("roll over".into());
        let correlation = Uuid::new_v4();
        let (ids, capture) = captured(|| {
            app.save_with(&mut dog, Metadata::correlated(correlation))
                .expect("save")
        });
        assert_eq!(ids, [1, 2, 3], "{store}");
        let saves = capture.spans("save");
        assert_eq!(saves.len(), 1, "{store}: {saves:?}");
        let save = &saves[0];
        assert_eq!(save.field("application"), Some("TracedDogs"));
        assert_eq!(save.field("aggregate"), Some("Dog"));
        assert_eq!(save.field("id"), Some(dog.id().to_string().as_str()));
        assert_eq!(save.field("first_version"), Some("1"));
        assert_eq!(save.field("last_version"), Some("3"));
        assert_eq!(save.field("events"), Some("3"));
        assert_eq!(
            save.field("correlation_id"),
            Some(correlation.to_string().as_str())
        );
        assert_eq!(save.field("first_notification_id"), Some("1"));
        assert_eq!(save.field("last_notification_id"), Some("3"));
        // The recorder's insert, inside the save.
        let inserts = capture.spans("insert_events");
        assert_eq!(inserts.len(), 1, "{store}: {inserts:?}");
        assert_eq!(inserts[0].field("store"), Some(store));
        assert_eq!(inserts[0].field("rows"), Some("3"));
        assert_eq!(inserts[0].field("last_notification_id"), Some("3"));
        // No state: the name of the dog is not in any field.
        assert!(!capture.text().contains("Fido"), "{}", capture.text());
        assert!(!capture.text().contains("roll over"), "{}", capture.text());
    }
}

#[test]
fn a_save_of_two_aggregate_types_names_no_single_aggregate() {
    let app = Application::builder("Mixed").build().expect("app");
    let mut dog = Dog::register("Rex".into());
    let mut kennel = Kennel::book("Rex".into());
    let ((), capture) = captured(|| {
        app.save((&mut dog, &mut kennel)).expect("save");
    });
    let saves = capture.spans("save");
    assert_eq!(saves.len(), 1, "{saves:?}");
    assert_eq!(saves[0].field("events"), Some("2"));
    assert_eq!(saves[0].field("aggregate"), None, "{saves:?}");
    assert_eq!(saves[0].field("id"), None, "{saves:?}");
}

#[test]
fn a_get_records_the_snapshot_and_the_events_replayed_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = Application::builder("Dogs")
        .sqlite(sqlite_file(&dir))
        .snapshotting(true)
        .build()
        .expect("app");
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit".into());
    app.save(&mut dog).expect("save");
    app.take_snapshot::<Dog>(dog.id()).expect("snapshot");
    dog.add_trick("roll over".into());
    dog.add_trick("play dead".into());
    app.save(&mut dog).expect("save");

    let (copy, capture) = captured(|| app.get::<Dog>(dog.id()).expect("get"));
    assert_eq!(copy.version(), 4);
    let gets = capture.spans("get");
    assert_eq!(gets.len(), 1, "{gets:?}");
    let get = &gets[0];
    assert_eq!(get.field("aggregate"), Some("Dog"));
    assert_eq!(get.field("id"), Some(dog.id().to_string().as_str()));
    assert_eq!(get.field("snapshot_version"), Some("2"));
    assert_eq!(get.field("replayed"), Some("2"));
    assert_eq!(get.field("version"), Some("4"));

    // Without a snapshot at or below version 1, every event is replayed.
    let (_, capture) = captured(|| app.get_at::<Dog>(dog.id(), 1).expect("get_at"));
    let gets = capture.spans("get");
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].field("snapshot_version"), None, "{gets:?}");
    assert_eq!(gets[0].field("replayed"), Some("1"));
    assert_eq!(gets[0].field("at"), Some("1"));
}

#[test]
fn a_followers_pull_records_the_notifications_it_processed() {
    let dogs = Arc::new(Application::builder("Dogs").build().expect("app"));
    let kennels = Arc::new(Application::builder("Kennels").build().expect("app"));
    let policy = Policies::new().on::<Dog>(|event, processing| match &event.event {
        DogEvent::Registered { name } => processing.save(&mut Kennel::book(name.clone())),
        DogEvent::TrickAdded { .. } => Ok(()),
    });
    let system = Arc::new(
        System::builder()
            .application(dogs.clone())
            .process(kennels.clone(), policy)
            .pipe([&dogs, &kennels])
            .build()
            .expect("system"),
    );
    let mut fido = Dog::register("Fido".into());
    fido.add_trick("sit".into());
    dogs.save(&mut fido).expect("save");
    dogs.save(&mut Dog::register("Rex".into())).expect("save");

    let (processed, capture) = captured(|| system.pull("Kennels", 10).expect("pull"));
    assert_eq!(processed, 3);
    let pulls = capture.spans("pull");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pull = &pulls[0];
    assert_eq!(pull.field("follower"), Some("Kennels"));
    assert_eq!(pull.field("leader"), Some("Dogs"));
    assert_eq!(pull.field("from"), Some("1"));
    assert_eq!(pull.field("processed"), Some("3"));
    assert_eq!(pull.field("first_notification_id"), Some("1"));
    assert_eq!(pull.field("last_notification_id"), Some("3"));
    let processes = capture.spans("process");
    let ids: Vec<_> = processes
        .iter()
        .map(|p| p.field("notification_id").unwrap_or("-"))
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{processes:?}");
    assert_eq!(processes[0].field("topic"), Some("Dog.Registered"));
    assert_eq!(processes[1].field("topic"), Some("Dog.TrickAdded"));
    assert_eq!(processes[0].field("originator_version"), Some("1"));
    assert_eq!(processes[0].field("events"), Some("1"));
    assert_eq!(processes[1].field("events"), Some("0"));

    // A second pull has nothing to do: from 4, none processed.
    let (_, capture) = captured(|| {
        SingleThreadedRunner::new(system.clone())
            .run()
            .expect("run")
    });
    let pulls = capture.spans("pull");
    assert!(!pulls.is_empty());
    assert!(
        pulls
            .iter()
            .filter(|p| p.field("follower") == Some("Kennels"))
            .all(|p| p.field("from") == Some("4") && p.field("processed") == Some("0")),
        "{pulls:?}"
    );
}

#[test]
fn the_cipher_key_is_in_no_span_or_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = annals::cipher::create_key();
    let (_, capture) = captured(|| {
        let app = Application::builder("Secrets")
            .sqlite(sqlite_file(&dir))
            .cipher_key(key.clone())
            .snapshotting(true)
            .build()
            .expect("app");
        let mut dog = Dog::register("Fido".into());
        dog.add_trick("sit".into());
        app.save(&mut dog).expect("save");
        app.take_snapshot::<Dog>(dog.id()).expect("snapshot");
        let copy: Dog = app.get(dog.id()).expect("get");
        assert_eq!(copy.tricks, ["sit"]);
        // Conflicts and retries are traced too.
        let mut stale: Dog = app.get(dog.id()).expect("get");
        dog.add_trick("down".into());
        app.save(&mut dog).expect("save");
        stale.add_trick("stay".into());
        assert!(app.save(&mut stale).is_err());
        app.execute(dog.id(), |d: &mut Dog| {
            d.add_trick("stay".into());
            Ok::<_, String>(())
        })
        .expect("execute");
        // A keyed command and its retry: neither the client's key nor
        // the output is traced.
        for _ in 0..2 {
            let output = app
                .execute_once("client-idempotency-key", dog.id(), |d: &mut Dog| {
                    d.add_trick("roll over".into());
                    Ok::<_, String>("an outcome the store keeps sealed".to_owned())
                })
                .expect("execute_once");
            assert_eq!(output, "an outcome the store keeps sealed");
        }
    });
    let text = capture.text();
    assert!(!text.contains("client-idempotency-key"), "{text}");
    assert!(
        !text.contains("an outcome") && !text.contains("roll over"),
        "{text}"
    );
    assert!(!capture.spans("save").is_empty() && !capture.spans("get").is_empty());
    assert!(!capture.spans("execute").is_empty(), "{text}");
    assert!(!text.contains(&key), "the key is in {text}");
    // Nor any half of it, nor the state it encrypts.
    assert!(!text.contains(&key[..key.len() / 2]), "{text}");
    assert!(!text.contains(&key[key.len() / 2..]), "{text}");
    assert!(!text.contains("Fido") && !text.contains("stay"), "{text}");
}

/// The request's span carries its id, and annals' spans of the command
/// nest in it.
#[tokio::test]
async fn the_spans_of_a_request_carry_its_id() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let bank = annals_examples::bank::Bank::build(
        Application::builder("Bank").sqlite(annals_tests::stores::temp_sqlite("request_spans")),
    )
    .await
    .expect("the bank");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(annals_examples::bank::serve(
        listener,
        bank,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let ada: serde_json::Value = client
        .post(format!("{base}/accounts"))
        .json(&serde_json::json!({"owner": "Ada"}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let answer = client
        .post(format!(
            "{base}/accounts/{}/deposit",
            ada["id"].as_str().expect("an id")
        ))
        .header("x-request-id", "trace-me-42")
        .json(&serde_json::json!({"amount": 5}))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let log = String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    let traced: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("request_id=trace-me-42") || l.contains("request_id=\"trace-me-42\"")
        })
        .collect();
    assert!(
        traced
            .iter()
            .any(|l| l.contains(":execute{") && l.contains(":save{")),
        "no save span in the request's span:\n{log}"
    );
}
