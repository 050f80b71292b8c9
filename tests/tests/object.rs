//! The object store (`persistence::object`): the recorder contract on a
//! directory, in memory, on S3 (an S3-protocol server on 127.0.0.1,
//! `ANNALS_S3_LOCATION`, started by `.ci/run`) and on Azure Blob Storage
//! (Azurite on 127.0.0.1, `ANNALS_AZURE_LOCATION`, started by `.ci/run`);
//! faults injected at every object call of a save, and racing processes,
//! on memory or a directory and on Azure; bad locations and foreign
//! objects.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use annals::env::Env;
use annals::persistence::object::{ObjectConfig, ObjectRecorder};
use annals::persistence::{AggregateRecorder, ApplicationRecorder, ProcessRecorder, Store};
use annals::prelude::*;
use annals_tests::dogs::{Dog, DogEvent};
use annals_tests::stores::temp_dir;
use object_store::path::Path;
use object_store::ObjectStoreExt as _;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

fn directory(name: &str) -> Arc<dyn ProcessRecorder> {
    let dir = temp_dir().join(name);
    let dir = dir.to_str().expect("a UTF-8 path");
    ObjectConfig::location(dir)
        .open("Contract")
        .expect("open the directory store")
        .events
}

/// The location the test server's variable names, or `None` (a failure
/// in CI, where every server runs).
fn location_from(var: &str, server: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(location) => Some(location),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the {server} tests must run in CI: set {var} (.ci/run starts a server)"
            );
            None
        }
    }
}

/// The S3 location of the test server, or `None` (a failure in CI).
fn s3_location() -> Option<String> {
    location_from("ANNALS_S3_LOCATION", "S3")
}

/// The Azure location of the test server (Azurite, `az://container/prefix`;
/// the account and endpoint in `AZURE_*`), or `None` (a failure in CI).
fn azure_location() -> Option<String> {
    location_from("ANNALS_AZURE_LOCATION", "Azure")
}

/// A recorder under a fresh prefix of `location`.
fn under(location: Option<String>, name: &str) -> Option<Arc<dyn ProcessRecorder>> {
    let location = format!("{}/{name}-{}", location?, Uuid::new_v4().simple());
    Some(
        ObjectConfig::location(&location)
            .open("Contract")
            .unwrap_or_else(|e| panic!("open {location}: {}", e.report()))
            .events,
    )
}

/// The Azure test container as an `ObjectStore`, and a fresh prefix in it
/// for `name`: for the tests that wrap the store (faults) or share it
/// between recorders.
fn azure_store(name: &str) -> Option<(Arc<dyn ObjectStore>, Path)> {
    let location = azure_location()?;
    let (container, prefix) = location
        .strip_prefix("az://")
        .and_then(|rest| rest.split_once('/'))
        .expect("ANNALS_AZURE_LOCATION is az://container/prefix");
    let store = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .build()
        .unwrap_or_else(|e| panic!("an Azure client for {location}: {e}"));
    let prefix = Path::from(format!("{prefix}/{name}-{}", Uuid::new_v4().simple()));
    Some((Arc::new(store), prefix))
}

/// A fresh in-memory store.
fn memory_store(_: &str) -> Option<(Arc<dyn ObjectStore>, Path)> {
    Some((
        Arc::new(object_store::memory::InMemory::new()),
        Path::default(),
    ))
}

mod on_a_directory {
    annals::recorder_contract!(|name| Some(super::directory(name)));
}

mod in_memory {
    use annals::persistence::Store as _;
    annals::recorder_contract!(|_| Some(
        annals::persistence::object::ObjectConfig::location("memory://")
            .open("Contract")
            .map(|r| r.events)
            .expect("open memory")
    ));
}

mod on_s3 {
    annals::recorder_contract!(|name| super::under(super::s3_location(), name));
}

mod on_azure {
    annals::recorder_contract!(|name| super::under(super::azure_location(), name));
}

/// The key store contract on each store: the data keys under
/// `events-keys/`.
mod keys {
    use std::sync::Arc;

    use annals::persistence::keys::KeyStore;
    use annals::persistence::object::ObjectConfig;
    use annals::persistence::{ProcessRecorder, Store as _};

    type Opened = Option<(Arc<dyn ProcessRecorder>, Arc<dyn KeyStore>)>;

    /// The events and keys of an application at `location`.
    fn at(location: &str) -> Opened {
        let recorders = ObjectConfig::location(location)
            .open("Contract")
            .unwrap_or_else(|e| panic!("open {location}: {}", e.report()));
        let keys = recorders.keys.expect("the object store keeps keys");
        Some((recorders.events, keys))
    }

    /// Under a fresh prefix of the test server's `location`.
    fn under(location: Option<String>, name: &str) -> Opened {
        at(&format!(
            "{}/keys-{name}-{}",
            location?,
            annals::prelude::Uuid::new_v4().simple()
        ))
    }

    mod on_a_directory {
        annals::key_store_contract!(|name| super::at(
            super::super::temp_dir()
                .join(name)
                .to_str()
                .expect("a UTF-8 path")
        ));
    }

    mod in_memory {
        annals::key_store_contract!(|_| super::at("memory://"));
    }

    mod on_s3 {
        annals::key_store_contract!(|name| super::under(super::super::s3_location(), name));
    }

    mod on_azure {
        annals::key_store_contract!(|name| super::under(super::super::azure_location(), name));
    }
}

#[test]
fn an_application_on_a_directory_from_the_environment() {
    let dir = temp_dir().join("school");
    let env = Env::from_map(
        "School",
        [
            ("PERSISTENCE_MODULE", "object"),
            ("OBJECT_STORE_LOCATION", dir.to_str().unwrap()),
            ("IS_SNAPSHOTTING_ENABLED", "yes"),
        ],
    );
    let build = || {
        Application::builder("School")
            .with_env(&env)
            .and_then(|b| b.snapshot_every::<Dog>(2).build())
            .unwrap_or_else(|e| panic!("{}", e.report()))
    };
    let app = build();
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit".into());
    dog.add_trick("roll".into());
    app.save(&mut dog).unwrap();
    let again = build();
    let read = again.get::<Dog>(dog.id()).unwrap();
    assert_eq!((read.tricks.len(), read.version()), (2, 3));
    assert_eq!(
        again
            .snapshots()
            .unwrap()
            .versions::<Dog>(dog.id())
            .unwrap(),
        [3]
    );
    assert!(dir.join("school").join("events").is_dir());
}

#[test]
fn bad_locations_are_errors_naming_them() {
    let missing = Env::from_map("School", [("PERSISTENCE_MODULE", "object")]);
    let err = Application::builder("School")
        .with_env(&missing)
        .unwrap_err();
    assert!(err.to_string().contains("OBJECT_STORE_LOCATION"), "{err}");

    let err = ObjectConfig::location("ftp://example/x")
        .open("School")
        .unwrap_err();
    assert!(err.to_string().contains("ftp"), "{err}");

    let dir = temp_dir().join("absent");
    let mut config = ObjectConfig::location(dir.to_str().unwrap());
    config.create = false;
    let err = config.open("School").unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    // A directory that may not be written: a file where it should be.
    let file = temp_dir().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = ObjectConfig::location(file.to_str().unwrap())
        .open("School")
        .unwrap_err();
    assert!(
        err.report().to_string().contains("a-file"),
        "{}",
        err.report()
    );
}

#[test]
fn a_foreign_object_in_the_log_is_an_error_naming_it() {
    let dir = temp_dir().join("foreign");
    let recorder = ObjectConfig::location(dir.to_str().unwrap())
        .open("School")
        .unwrap()
        .events;
    recorder
        .insert_events(&[annals::testing::contract::event("a", 1, "Dog.Registered")])
        .unwrap();
    let second = dir.join("school/events/00000000000000000002");
    for junk in [
        &b"{\"first\": 2, \"events\": [{\"id\": 1"[..],
        b"\x00\xff",
        b"{\"first\": 7, \"events\": []}",
    ] {
        std::fs::write(&second, junk).unwrap();
        let err = recorder.max_notification_id().unwrap_err();
        assert!(
            err.report().to_string().contains("00000000000000000002"),
            "{}",
            err.report()
        );
    }
}

/// An object store around another, for the tests, its probes all off
/// unless set: it fails its `fail_at`-th call (0 = never) of the kinds
/// that write or read objects, after doing it or before (`after`); it
/// counts GETs, HEADs and listings (a cold start's cost, from outside);
/// it holds save writes at a gate (the k-th waits while k is above
/// `gate`, and the saves that arrive meanwhile queue behind it); and it
/// panics in its `panic_at`-th save write.
#[derive(Debug)]
struct Probe {
    inner: Arc<dyn ObjectStore>,
    calls: AtomicUsize,
    fail_at: AtomicUsize,
    after: bool,
    gets: AtomicUsize,
    heads: AtomicUsize,
    lists: AtomicUsize,
    /// The GETs of save objects (`.../events/{n}`).
    save_gets: AtomicUsize,
    gate: AtomicUsize,
    /// Save writes begun.
    puts: AtomicUsize,
    panic_at: AtomicUsize,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Probe({})", self.inner)
    }
}

impl Probe {
    fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(0),
            after: false,
            gets: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            save_gets: AtomicUsize::new(0),
            gate: AtomicUsize::new(usize::MAX),
            puts: AtomicUsize::new(0),
            panic_at: AtomicUsize::new(0),
        }
    }

    /// Faults after the call takes effect, or before.
    fn faulty(inner: Arc<dyn ObjectStore>, after: bool) -> Self {
        Self {
            after,
            ..Self::new(inner)
        }
    }

    /// Save writes held at the gate until it is opened.
    fn held(inner: Arc<dyn ObjectStore>) -> Self {
        let probe = Self::new(inner);
        probe.gate.store(0, Ordering::SeqCst);
        probe
    }

    fn fault(&self) -> Option<object_store::Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (call == self.fail_at.load(Ordering::SeqCst)).then(|| object_store::Error::Generic {
            store: "Probe",
            source: "the connection was cut".into(),
        })
    }

    fn reset(&self) {
        for counter in [&self.gets, &self.heads, &self.lists, &self.save_gets] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Waits until `n` save writes have begun.
    fn wait_for_puts(&self, n: usize) {
        while self.puts.load(Ordering::SeqCst) < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for Probe {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if location.as_ref().contains("/events/") {
            let k = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
            while k > self.gate.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert_ne!(k, self.panic_at.load(Ordering::SeqCst), "the store panics");
        }
        if !self.after {
            if let Some(e) = self.fault() {
                return Err(e);
            }
        }
        let done = self.inner.put_opts(location, payload, opts).await?;
        match self.after.then(|| self.fault()).flatten() {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if let Some(e) = self.fault() {
            return Err(e);
        }
        if options.head {
            self.heads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if location.as_ref().contains("/events/") {
                self.save_gets.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The stores the fault and race tests run on: a fresh one (or a fresh
/// prefix of one) for each case, or `None` when its server is not
/// configured (a failure in CI).
type MakeStore = fn(&str) -> Option<(Arc<dyn ObjectStore>, Path)>;

/// For every object call N of a save, with the fault before and after the
/// call takes effect: the save either stored everything or nothing, every
/// save acknowledged before is still there, and the next writer (a new
/// recorder, as after a crash) continues the stream.
#[test]
fn a_save_cut_off_at_any_object_call_is_whole_or_absent() {
    save_cut_off_at_any_object_call(memory_store, annals::persistence::object::SEGMENT_SAVES);
}

/// As above, with an index segment after every save: the segment's write
/// is one more call to cut off, and a cut-off segment costs nothing but
/// reading its saves.
#[test]
fn a_save_and_its_index_segment_cut_off_at_any_object_call_are_whole_or_absent() {
    save_cut_off_at_any_object_call(memory_store, 1);
}

/// As above, on Azure Blob Storage (Azurite).
#[test]
fn a_save_cut_off_at_any_object_call_is_whole_or_absent_on_azure() {
    if azure_location().is_none() {
        annals_tests::skipped("a_save_cut_off_at_any_object_call_is_whole_or_absent_on_azure");
        return;
    }
    save_cut_off_at_any_object_call(azure_store, 1);
}

fn save_cut_off_at_any_object_call(make: MakeStore, segment_saves: u64) {
    for after in [false, true] {
        for n in 1..=5 {
            let (inner, prefix) = make("cut-off").expect("the store");
            let faulty = Arc::new(Probe::faulty(inner.clone(), after));
            let root = prefix.join("school").join("events");
            let recorder = ObjectRecorder::open_with(faulty.clone(), root.clone(), segment_saves)
                .expect("open through the faults");
            let acknowledged = recorder
                .insert_events(&[annals::testing::contract::event("a", 1, "Dog.Registered")])
                .expect("the first save");
            assert_eq!(acknowledged, [1]);
            faulty.calls.store(0, Ordering::SeqCst);
            faulty.fail_at.store(n, Ordering::SeqCst);
            let batch = [
                annals::testing::contract::event("a", 2, "Dog.Registered"),
                annals::testing::contract::event("b", 1, "Dog.Registered"),
            ];
            let outcome = recorder.insert_events(&batch);
            faulty.fail_at.store(0, Ordering::SeqCst);

            let next = ObjectRecorder::open_with(inner.clone(), root.clone(), segment_saves)
                .expect("open as after a crash");
            let log = next
                .select_notifications(&annals::persistence::NotificationQuery::new(1, 10))
                .expect("the log");
            let stored: Vec<(String, u64)> = log
                .iter()
                .map(|n| (n.event.originator_id.clone(), n.event.originator_version))
                .collect();
            let whole = vec![
                ("a".to_owned(), 1),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1),
            ];
            let absent = vec![("a".to_owned(), 1)];
            match &outcome {
                Ok(_) => assert_eq!(stored, whole, "fault {n} (after: {after}): acknowledged"),
                Err(_) => assert!(
                    stored == whole || stored == absent,
                    "fault {n} (after: {after}): partial save {stored:?}"
                ),
            }
            // The next writer continues on its own: the stream's next
            // version is free (or taken, if the cut-off save landed).
            let next_version = if stored == whole { 3 } else { 2 };
            next.insert_events(&[annals::testing::contract::event(
                "a",
                next_version,
                "Dog.Registered",
            )])
            .unwrap_or_else(|e| panic!("fault {n} (after: {after}): stuck: {}", e.report()));
            // The old recorder, too, carries on after reading what happened.
            let err = recorder.insert_events(&[annals::testing::contract::event(
                "a",
                next_version,
                "Dog.Registered",
            )]);
            assert!(err.expect_err("a conflict").is_conflict());
        }
    }
}

/// Two recorders of one store, as two processes: the second, which has
/// not read the first's keyed save, stores the same idempotency key. Its
/// create-if-absent write finds the name taken, reads the first's save
/// there, and its key is a conflict: nothing of its save is stored, and
/// the key keeps the first outcome.
#[test]
fn a_key_stored_by_another_writer_is_a_conflict_for_the_write_that_loses() {
    key_stored_by_another_writer(memory_store);
}

/// As above, on Azure Blob Storage (Azurite).
#[test]
fn a_key_stored_by_another_writer_is_a_conflict_for_the_write_that_loses_on_azure() {
    if azure_location().is_none() {
        annals_tests::skipped(
            "a_key_stored_by_another_writer_is_a_conflict_for_the_write_that_loses_on_azure",
        );
        return;
    }
    key_stored_by_another_writer(azure_store);
}

fn key_stored_by_another_writer(make: MakeStore) {
    use annals::persistence::{EventQuery, KeyedOutcome};
    let keyed = |outcome: &[u8]| KeyedOutcome {
        key: "request-1".into(),
        outcome: outcome.to_vec(),
    };
    let (inner, prefix) = make("key").expect("the store");
    let root = prefix.join("bank").join("events");
    let first = ObjectRecorder::open(inner.clone(), root.clone()).expect("open the first");
    let second = ObjectRecorder::open(inner.clone(), root.clone()).expect("open the second");
    let event = annals::testing::contract::event;
    first
        .insert_events_keyed(&[event("a", 1, "Dog.Registered")], None, &keyed(b"first"))
        .expect("the first keyed save");
    let err = second
        .insert_events_keyed(&[event("b", 1, "Dog.Registered")], None, &keyed(b"second"))
        .expect_err("the second keyed save");
    assert!(err.is_conflict(), "{}", err.report());
    assert_eq!(
        second.select_outcome("request-1").expect("the outcome"),
        Some(b"first".to_vec())
    );
    let reader = ObjectRecorder::open(inner, root).expect("open a reader");
    assert!(reader
        .select_events("b", &EventQuery::all())
        .expect("the events of b")
        .is_empty());
    assert_eq!(reader.max_notification_id().expect("the last id"), 1);
}

/// A keyed save cut off at any object call (before or after the call
/// takes effect) is whole or absent, its key with it: the client's retry
/// (a new recorder, as after a crash) finds the key exactly when the
/// events are stored.
#[test]
fn a_keyed_save_cut_off_at_any_object_call_stores_its_key_with_its_events_or_neither() {
    keyed_save_cut_off_at_any_object_call(memory_store);
}

/// As above, on Azure Blob Storage (Azurite).
#[test]
fn a_keyed_save_cut_off_at_any_object_call_stores_its_key_with_its_events_or_neither_on_azure() {
    if azure_location().is_none() {
        annals_tests::skipped(
            "a_keyed_save_cut_off_at_any_object_call_stores_its_key_with_its_events_or_neither_on_azure",
        );
        return;
    }
    keyed_save_cut_off_at_any_object_call(azure_store);
}

fn keyed_save_cut_off_at_any_object_call(make: MakeStore) {
    use annals::persistence::{EventQuery, KeyedOutcome};
    let event = annals::testing::contract::event;
    for after in [false, true] {
        for n in 1..=4 {
            let (inner, prefix) = make("keyed-cut-off").expect("the store");
            let faulty = Arc::new(Probe::faulty(inner.clone(), after));
            let root = prefix.join("bank").join("events");
            let recorder = ObjectRecorder::open(faulty.clone(), root.clone())
                .expect("open through the faults");
            recorder
                .insert_events(&[event("a", 1, "Dog.Registered")])
                .expect("the first save");
            faulty.calls.store(0, Ordering::SeqCst);
            faulty.fail_at.store(n, Ordering::SeqCst);
            let key = KeyedOutcome {
                key: "request-1".into(),
                outcome: b"done".to_vec(),
            };
            let saved =
                recorder.insert_events_keyed(&[event("a", 2, "Dog.Registered")], None, &key);
            faulty.fail_at.store(0, Ordering::SeqCst);

            let retry =
                ObjectRecorder::open(inner.clone(), root.clone()).expect("open as after a crash");
            let stored = retry
                .select_events("a", &EventQuery::all())
                .expect("the events of a")
                .len()
                == 2;
            let found = retry.select_outcome("request-1").expect("the outcome");
            assert_eq!(
                found.is_some(),
                stored,
                "fault {n} (after: {after}): key and events"
            );
            if saved.is_ok() {
                assert!(stored, "fault {n} (after: {after}): acknowledged");
            }
            if let Some(found) = found {
                assert_eq!(found, b"done");
            }
        }
    }
}

/// Two OS processes race 1,000 saves into one stream of one directory:
/// every version is stored once, and the wins add up.
#[test]
fn two_processes_racing_on_one_stream_store_each_version_once() {
    let dir = temp_dir().join("race");
    std::fs::create_dir_all(&dir).unwrap();
    race(dir.to_str().expect("a UTF-8 path"), 1000);
}

/// As above, on Azure Blob Storage (Azurite), each racer a client of its
/// own.
#[test]
fn two_processes_racing_on_one_stream_store_each_version_once_on_azure() {
    let Some(location) = azure_location() else {
        annals_tests::skipped(
            "two_processes_racing_on_one_stream_store_each_version_once_on_azure",
        );
        return;
    };
    race(
        &format!("{location}/race-{}", Uuid::new_v4().simple()),
        1000,
    );
}

/// Two `object_racer` processes on `location` until the stream "shared"
/// holds `saves` versions.
fn race(location: &str, saves: u64) {
    let racer = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_object_racer"))
            .arg(location)
            .arg(saves.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start object_racer")
    };
    let (a, b) = (racer(), racer());
    let wins: u64 = [a, b]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("a racer's output");
            assert!(out.status.success(), "a racer failed");
            String::from_utf8(out.stdout)
                .expect("a UTF-8 count")
                .trim()
                .parse::<u64>()
                .expect("a count of wins")
        })
        .sum();
    assert_eq!(wins, saves, "the racers' wins add up to the stream");
    let recorder = ObjectConfig::location(location)
        .open("Race")
        .expect("open the raced store")
        .events;
    let versions: Vec<u64> = recorder
        .select_events("shared", &annals::persistence::EventQuery::all())
        .expect("the stream")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(versions, (1..=saves).collect::<Vec<_>>());
    assert_eq!(recorder.max_notification_id().expect("the last id"), saves);
}

/// A bucket that does not exist: opening the store is an error naming
/// the bucket (S3 answers a GET there with a 404, as for a missing object,
/// which must not read as an empty store), and nothing is written.
#[test]
fn a_missing_bucket_is_an_error_at_open_naming_it() {
    let Some(location) = s3_location() else {
        annals_tests::skipped("a_missing_bucket_is_an_error_at_open_naming_it");
        return;
    };
    let bucket = format!("no-such-bucket-{}", Uuid::new_v4().simple());
    let missing = format!("s3://{bucket}/school");
    let err = ObjectConfig::location(&missing)
        .open("School")
        .map(|_| ())
        .expect_err("opening a store in a missing bucket");
    let report = err.report().to_string();
    assert!(err.is_persistence(), "{report}");
    assert!(report.contains(&bucket), "{report}");
    assert!(
        report.contains(&format!("AmazonS3({bucket}): the bucket does not exist")),
        "{report}"
    );
    // A bucket that does exist opens empty.
    let empty = format!("{location}/empty-{}", Uuid::new_v4().simple());
    let recorders = ObjectConfig::location(&empty)
        .open("School")
        .unwrap_or_else(|e| panic!("open {empty}: {}", e.report()));
    assert_eq!(recorders.events.max_notification_id().unwrap(), 0);
}

/// A container that does not exist: opening the store is an error naming
/// the container (Azure, like S3, answers a GET there with a 404, which
/// must not read as an empty store).
#[test]
fn a_missing_container_is_an_error_at_open_naming_it() {
    let Some(location) = azure_location() else {
        annals_tests::skipped("a_missing_container_is_an_error_at_open_naming_it");
        return;
    };
    let container = format!("no-such-container-{}", Uuid::new_v4().simple());
    let missing = format!("az://{container}/school");
    let err = ObjectConfig::location(&missing)
        .open("School")
        .map(|_| ())
        .expect_err("opening a store in a missing container");
    let report = err.report().to_string();
    assert!(err.is_persistence(), "{report}");
    assert!(
        report.contains(&format!(
            "container: {container} }}: the container does not exist"
        )),
        "{report}"
    );
    // The other spelling of the scheme, and a container that does exist,
    // which opens empty.
    let empty = format!(
        "{}/empty-{}",
        location.replacen("az://", "azure://", 1),
        Uuid::new_v4().simple()
    );
    let recorders = ObjectConfig::location(&empty)
        .open("School")
        .unwrap_or_else(|e| panic!("open {empty}: {}", e.report()));
    assert_eq!(recorders.events.max_notification_id().unwrap(), 0);
}

/// An aggregate change observer on a directory sees the history, then
/// what another application (as another process would) stores, and only
/// that aggregate's events.
#[test]
fn changes_of_one_aggregate_include_history_and_other_writers() {
    let dir = temp_dir().join("changes");
    let store = ObjectConfig::location(dir.to_str().unwrap());
    let watcher = Application::builder("School")
        .store(store.clone())
        .build()
        .unwrap();
    let writer = Application::builder("School").store(store).build().unwrap();
    let mut fido = Dog::register("Fido".into());
    fido.add_trick("sit".into());
    writer.save(&mut fido).unwrap();
    let changes = watcher.changes::<Dog>(fido.id()).unwrap();
    let stopper = changes.stopper();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            writer.save(&mut Dog::register("Rex".into())).unwrap();
            let mut fido = writer.get::<Dog>(fido.id()).unwrap();
            fido.add_trick("roll".into());
            writer.save(&mut fido).unwrap();
        });
        let mut tricks = Vec::new();
        for event in changes {
            let event = event.unwrap();
            if let DogEvent::TrickAdded { trick } = event.event {
                tricks.push(trick);
            }
            if event.originator_version == 3 {
                stopper.stop();
            }
        }
        assert_eq!(tricks, ["sit", "roll"]);
    });
}

/// Runs `work` on a thread of its own and fails the test if it takes more
/// than `limit` (a stalled request, not a slow one).
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("stalled: not done within {limit:?}"))
}

/// An S3 server that keeps connections alive (as AWS S3 and MinIO do; the
/// CI server does): one store's recorders, a watcher and a second
/// application share connections of one client, and each call answers in
/// time, where a connection opened by one recorder's runtime would stall
/// in another's until the client's 30 s timeout.
#[test]
fn an_s3_store_over_kept_alive_connections_opens_saves_watches_and_reads() {
    let Some(location) = s3_location() else {
        annals_tests::skipped(
            "an_s3_store_over_kept_alive_connections_opens_saves_watches_and_reads",
        );
        return;
    };
    over_kept_alive_connections(&location);
}

/// As above, on Azure Blob Storage (Azurite, which CI starts keeping idle
/// connections for a minute).
#[test]
fn an_azure_store_over_kept_alive_connections_opens_saves_watches_and_reads() {
    let Some(location) = azure_location() else {
        annals_tests::skipped(
            "an_azure_store_over_kept_alive_connections_opens_saves_watches_and_reads",
        );
        return;
    };
    over_kept_alive_connections(&location);
}

fn over_kept_alive_connections(location: &str) {
    let location = format!("{location}/kept-alive-{}", Uuid::new_v4().simple());
    within(std::time::Duration::from_secs(20), move || {
        let store = ObjectConfig::location(&location);
        let app = Application::builder("School")
            .store(store.clone())
            .build()
            .unwrap_or_else(|e| panic!("open {location}: {}", e.report()));
        let mut fido = Dog::register("Fido".into());
        app.save(&mut fido).expect("the first save");
        let other = Application::builder("School")
            .store(store)
            .build()
            .expect("a second application");
        let changes = other.changes::<Dog>(fido.id()).expect("the changes");
        let stopper = changes.stopper();
        fido.add_trick("sit".into());
        app.save(&mut fido).expect("the second save");
        for event in changes {
            if event.expect("a change").originator_version == 2 {
                stopper.stop();
            }
        }
        assert_eq!(
            other
                .get::<Dog>(fido.id())
                .expect("the dog, read by the other")
                .tricks,
            ["sit"]
        );
        assert_eq!(app.get::<Dog>(fido.id()).expect("the dog").version(), 2);
    });
}

/// A loopback HTTP proxy in front of the S3 server that forwards every
/// request, but answers the first PUT of a save object with a 500 after
/// the server stored it (as S3 may: it documents 500 as retryable). With
/// `in_progress`, it then answers the client's retry of that PUT with the
/// 409 S3 gives while a write to the name is still under way, and the
/// GET that follows with a 404, as if the first write had not landed yet.
struct FlakyProxy {
    runtime: tokio::runtime::Runtime,
    endpoint: String,
    failed_puts: Arc<AtomicUsize>,
    missed_get: Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyProxy {
    fn start(upstream: String, in_progress: bool) -> Self {
        use axum::body::Body;
        use axum::extract::{Request, State};
        use axum::response::Response;

        #[derive(Clone)]
        struct Proxy {
            upstream: String,
            client: reqwest::Client,
            failed_puts: Arc<AtomicUsize>,
            in_progress: bool,
            missed_get: Arc<std::sync::atomic::AtomicBool>,
        }

        fn s3_error(status: u16, code: &str) -> Response {
            Response::builder()
                .status(status)
                .body(Body::from(format!(
                    "<Error><Code>{code}</Code><Message>{code}</Message></Error>"
                )))
                .expect("an S3 error response")
        }

        async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("the request's body");
            let save_put =
                parts.method == axum::http::Method::PUT && parts.uri.path().contains("/events/");
            if proxy.in_progress && proxy.failed_puts.load(Ordering::SeqCst) == 1 && save_put {
                proxy.failed_puts.fetch_add(1, Ordering::SeqCst);
                return s3_error(409, "ConditionalRequestConflict");
            }
            if proxy.in_progress
                && proxy.failed_puts.load(Ordering::SeqCst) == 2
                && parts.method == axum::http::Method::GET
                && parts.uri.path().contains("/events/")
                && !proxy.missed_get.swap(true, Ordering::SeqCst)
            {
                return s3_error(404, "NoSuchKey");
            }
            let target = format!(
                "{}{}",
                proxy.upstream,
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut outgoing = proxy.client.request(parts.method.clone(), target);
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "content-length" | "connection") {
                    outgoing = outgoing.header(name, value);
                }
            }
            let answer = outgoing
                .body(body)
                .send()
                .await
                .expect("the S3 server answers");
            let status = answer.status();
            let headers = answer.headers().clone();
            let bytes = answer.bytes().await.expect("the answer's body");
            if save_put
                && status.is_success()
                && proxy.failed_puts.fetch_add(1, Ordering::SeqCst) == 0
            {
                return s3_error(500, "InternalError");
            }
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                if !matches!(
                    name.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from(bytes))
                .expect("the answer passed on")
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let failed_puts = Arc::new(AtomicUsize::new(0));
        let missed_get = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let proxy = Proxy {
            upstream,
            client: reqwest::Client::new(),
            failed_puts: failed_puts.clone(),
            in_progress,
            missed_get: missed_get.clone(),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        runtime.spawn(async move {
            let app = axum::Router::new().fallback(forward).with_state(proxy);
            axum::serve(listener, app).await.expect("the proxy serves");
        });
        Self {
            runtime,
            endpoint,
            failed_puts,
            missed_get,
        }
    }
}

/// A save that S3 stored but answered with a 500: the client retries the
/// create-if-absent write, which finds the object there (412). The save
/// is acknowledged once and stored once, not reported as a conflict
/// (which `execute` would answer by storing the command's events again).
#[test]
fn a_save_stored_but_answered_500_is_acknowledged_and_stored_once() {
    stored_but_answered_500(
        "a_save_stored_but_answered_500_is_acknowledged_and_stored_once",
        false,
    );
}

/// As above, but the retry meets the write still under way (409, then a
/// GET that finds nothing): the save writes the name again with the same
/// token, finds its own object there, and is acknowledged once.
#[test]
fn a_save_whose_retry_meets_its_own_write_under_way_is_stored_once() {
    stored_but_answered_500(
        "a_save_whose_retry_meets_its_own_write_under_way_is_stored_once",
        true,
    );
}

fn stored_but_answered_500(test: &str, in_progress: bool) {
    let (Some(location), Ok(upstream)) = (s3_location(), std::env::var("AWS_ENDPOINT")) else {
        annals_tests::skipped(test);
        return;
    };
    let (bucket, prefix) = location
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .expect("ANNALS_S3_LOCATION is s3://bucket/prefix");
    let root = Path::from(format!(
        "{prefix}/answered-500-{}/school/events",
        Uuid::new_v4().simple()
    ));
    let proxy = FlakyProxy::start(upstream.clone(), in_progress);
    let s3 = |endpoint: &str| -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_endpoint(endpoint)
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .build()
                .expect("an S3 client"),
        )
    };
    let through_proxy = s3(&proxy.endpoint);
    let recorder =
        ObjectRecorder::open(through_proxy, root.clone()).expect("open through the proxy");
    let ids = within(std::time::Duration::from_secs(20), move || {
        let first = recorder
            .insert_events(&[annals::testing::contract::event("a", 1, "Dog.Registered")])
            .map_err(|e| e.report().to_string());
        let second = recorder
            .insert_events(&[annals::testing::contract::event("a", 2, "Dog.Registered")])
            .map_err(|e| e.report().to_string());
        (first, second)
    });
    assert_eq!(
        proxy.failed_puts.load(Ordering::SeqCst),
        if in_progress { 3 } else { 2 },
        "the proxy answered the first save's stored PUT with a 500 (and its retry with a 409)"
    );
    if in_progress {
        assert!(
            proxy.missed_get.load(Ordering::SeqCst),
            "a GET found nothing"
        );
    }
    assert_eq!(ids, (Ok(vec![1]), Ok(vec![2])));
    // What the server holds, read past the proxy.
    let direct = ObjectRecorder::open(s3(&upstream), root).expect("open past the proxy");
    let log: Vec<(u64, String, u64)> = direct
        .select_notifications(&annals::persistence::NotificationQuery::new(1, 10))
        .expect("the log")
        .into_iter()
        .map(|n| (n.id, n.event.originator_id, n.event.originator_version))
        .collect();
    assert_eq!(log, [(1, "a".to_owned(), 1), (2, "a".to_owned(), 2)]);
    drop(proxy.runtime);
}

/// A writer killed mid-save leaves its temporary file (`{save}#{n}`) in
/// a directory store. Opening the store removes such files whose save is
/// stored and that no write has touched for ten minutes, and only those:
/// a recent one (a live writer's, perhaps), one of a save not stored yet
/// (a stalled writer could still publish it) and the saves stay.
#[test]
fn opening_a_directory_store_removes_stale_temporary_files_only() {
    use annals::testing::contract::event;
    let dir = temp_dir().join("temporaries");
    let store = ObjectConfig::location(dir.to_str().unwrap());
    let opened = store.open("School").unwrap();
    opened
        .events
        .insert_events(&[event("a", 1, "Dog.Registered")])
        .unwrap();
    opened
        .snapshots
        .insert_events(&[event("a", 1, "Dog.Snapshot")])
        .unwrap();
    let events = dir.join("school/events");
    let saved = std::fs::read(events.join("00000000000000000001")).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let write_old = |file: &std::path::Path| {
        std::fs::write(file, b"{\"first\": 2, \"ev").unwrap();
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    };
    // Old, and their saves are stored: a dead writer's.
    let stale = [
        events.join("00000000000000000001#1"),
        dir.join("school/snapshots/00000000000000000001#1"),
    ];
    stale.iter().for_each(|file| write_old(file));
    // Old, but save 2 is not stored: a writer stalled before its link
    // could still publish this name, so it stays until save 2 exists.
    let unpublished = events.join("00000000000000000002#1");
    write_old(&unpublished);
    let recent = events.join("00000000000000000001#2");
    std::fs::write(&recent, b"{\"first\": 2, \"ev").unwrap();
    // Named like no save: not the store's to remove.
    let foreign = events.join("notes#1");
    write_old(&foreign);

    let reopened = store.open("School").unwrap().events;
    for file in &stale {
        assert!(!file.exists(), "{} is left", file.display());
    }
    assert!(
        unpublished.exists(),
        "a temporary file of a save not stored was removed"
    );
    assert!(recent.exists(), "a recent temporary file was removed");
    assert!(foreign.exists(), "a file named like no save was removed");
    assert_eq!(
        std::fs::read(events.join("00000000000000000001")).unwrap(),
        saved
    );
    // The store carries on: the next save takes the next name, beside the
    // stalled writer's file.
    assert_eq!(
        reopened
            .insert_events(&[event("a", 2, "Dog.Registered")])
            .unwrap(),
        [2]
    );
    assert_eq!(opened.events.max_notification_id().unwrap(), 2);
    // Save 2 is stored now: its old temporary file goes at the next open.
    store.open("School").unwrap();
    assert!(!unpublished.exists(), "{} is left", unpublished.display());
    assert!(recent.exists() && foreign.exists());
}

// ---- Index segments: a cold start that reads segments, not saves. -------

/// What a store of `saves` saves (one new stream each, every 7th tracked,
/// every 11th keyed) holds, written with a segment every `segment_saves`.
fn fill(recorder: &ObjectRecorder, saves: u64) {
    use annals::persistence::{KeyedOutcome, Tracking};
    for n in 1..=saves {
        let events = [
            annals::testing::contract::event(&format!("s{n}"), 1, "Dog.Registered"),
            annals::testing::contract::event(&format!("s{n}"), 2, "Dog.TrickAdded"),
        ];
        let tracking = (n % 7 == 0).then(|| Tracking {
            application_name: "upstream".into(),
            notification_id: n,
        });
        if n % 11 == 0 {
            let outcome = KeyedOutcome {
                key: format!("k{n}"),
                outcome: n.to_string().into_bytes(),
            };
            recorder
                .insert_events_keyed(&events, tracking.as_ref(), &outcome)
                .expect("a keyed save");
        } else if let Some(tracking) = &tracking {
            recorder
                .insert_events_tracked(&events, tracking)
                .expect("a tracked save");
        } else {
            recorder.insert_events(&events).expect("a save");
        }
    }
}

/// Everything a recorder answers about the store [`fill`] made.
fn answers(recorder: &ObjectRecorder, saves: u64) -> Vec<String> {
    let mut answers = Vec::new();
    let log = recorder
        .select_notifications(&annals::persistence::NotificationQuery::new(1, 10_000))
        .expect("the log");
    answers.extend(log.iter().map(|n| format!("{} {:?}", n.id, n.event)));
    let topics = annals::persistence::NotificationQuery::new(5, 3).topics(["Dog.TrickAdded"]);
    let page = recorder
        .select_notifications(&topics)
        .expect("a filtered page");
    answers.push(format!(
        "{:?}",
        page.iter().map(|n| n.id).collect::<Vec<_>>()
    ));
    for n in [1, saves / 2, saves] {
        let stream = recorder
            .select_events(&format!("s{n}"), &annals::persistence::EventQuery::all())
            .expect("a stream");
        answers.push(format!("{stream:?}"));
    }
    answers.push(format!(
        "{} {} {}",
        recorder.max_tracking_id("upstream").expect("tracking"),
        recorder.has_tracking_id("upstream", 14).expect("tracking"),
        recorder.has_tracking_id("upstream", 15).expect("tracking"),
    ));
    answers.push(format!(
        "{:?}",
        recorder.select_outcome("k22").expect("an outcome")
    ));
    answers.push(format!(
        "{:?}",
        recorder.select_outcome("k23").expect("no outcome")
    ));
    answers
}

/// A recorder that opens a log of 95 saves with a segment every 10 reads
/// nine segments and the five saves after them (finding the last by a few
/// HEADs), not the 95 saves, and answers every query as a recorder that
/// read them all; a stream then costs the GET of its save.
#[test]
fn a_cold_start_reads_index_segments_and_the_saves_after_them() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    fill(&writer, 95);
    let expected = answers(&writer, 95);

    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), root.clone(), 10).expect("a cold start");
    let (gets, save_gets, heads) = (
        counting.gets.load(Ordering::SeqCst),
        counting.save_gets.load(Ordering::SeqCst),
        counting.heads.load(Ordering::SeqCst),
    );
    // Nine segments; the last one's last save (save 90: the log holds
    // what the segments say), saves 91 to 95 and the probe for save 96.
    assert_eq!(
        (gets - save_gets, save_gets),
        (9, 1 + 5 + 1),
        "GETs at a cold start"
    );
    assert!(heads <= 10, "{heads} HEADs to find the end of five saves");

    counting.reset();
    let stream = cold
        .select_events("s42", &annals::persistence::EventQuery::all())
        .expect("a stream");
    assert_eq!(stream.len(), 2);
    // The probe for a new save, and the stream's own save.
    assert_eq!(counting.save_gets.load(Ordering::SeqCst), 2);
    assert_eq!(answers(&cold, 95), expected);

    // A process with no segments reads every save, and then writes the
    // segments for the next.
    let other = Path::from("other/events");
    let plain = ObjectRecorder::open_with(inner.clone(), other.clone(), 1_000).expect("open");
    fill(&plain, 25);
    let expected = answers(&plain, 25);
    let migrating = ObjectRecorder::open_with(inner.clone(), other.clone(), 10).expect("open");
    assert_eq!(answers(&migrating, 25), expected);
    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), other, 10).expect("a cold start");
    assert_eq!(
        counting.save_gets.load(Ordering::SeqCst),
        1 + 5 + 1,
        "save 20, saves 21 to 25 and the probe"
    );
    assert_eq!(answers(&cold, 25), expected);
}

/// A segment that is corrupt, or holds other saves than its name says,
/// is passed over: its saves are read instead, and nothing is lost.
#[test]
fn an_unusable_index_segment_is_passed_over_for_its_saves() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    fill(&writer, 35);
    let expected = answers(&writer, 35);
    let put = |name: &str, body: &[u8]| {
        let path = Path::from(format!("school/events-index/{name}"));
        futures::executor::block_on(inner.put(&path, PutPayload::from(body.to_vec())))
            .expect("a put");
    };
    put("00000000000000000011-00000000000000000020", b"{ not json");
    let reopened = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    assert_eq!(answers(&reopened, 35), expected);
    // The open that passed it over wrote it again from the saves: the next
    // cold start reads segments only.
    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), root.clone(), 10).expect("open");
    assert_eq!(
        counting.save_gets.load(Ordering::SeqCst),
        1 + 5 + 1,
        "save 30, saves 31 to 35 and the probe"
    );
    assert_eq!(answers(&cold, 35), expected);
    // A segment named for saves 21 to 30 that holds 1 to 10.
    let first = futures::executor::block_on(inner.get(&Path::from(
        "school/events-index/00000000000000000001-00000000000000000010",
    )))
    .expect("segment 1");
    let first = futures::executor::block_on(first.bytes()).expect("its bytes");
    put("00000000000000000021-00000000000000000030", &first);
    let reopened = ObjectRecorder::open_with(inner, root, 10).expect("open");
    assert_eq!(answers(&reopened, 35), expected);
}

// ---- Saves that arrive together share one object. --------------------------

/// Eight saves that arrive while one is being written: the first is
/// written alone, those queued behind it in one object together; each is
/// checked alone (a conflict inside the group refuses that save only),
/// each gets its own notification ids, and a fresh process reads them all
/// once, with their tracking records and keys.
#[test]
fn saves_queued_behind_a_write_share_the_next_object() {
    use annals::persistence::{KeyedOutcome, NotificationQuery, Tracking};
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let held = Arc::new(Probe::held(inner.clone()));
    let root = Path::from("school/events");
    let recorder = Arc::new(ObjectRecorder::open(held.clone(), root.clone()).expect("open"));
    let first = {
        let recorder = recorder.clone();
        std::thread::spawn(move || {
            recorder.insert_events(&[annals::testing::contract::event(
                "first",
                1,
                "Dog.Registered",
            )])
        })
    };
    held.wait_for_puts(1);
    // Seven saves queue behind it: s1 to s6, and a second s1 that
    // conflicts with the first; s2 tracked, s3 keyed.
    let queued: Vec<_> = (1..=7u64)
        .map(|n| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                let stream = format!("s{}", if n == 7 { 1 } else { n });
                let events = [annals::testing::contract::event(
                    &stream,
                    1,
                    "Dog.Registered",
                )];
                match n {
                    2 => recorder.insert_events_tracked(
                        &events,
                        &Tracking {
                            application_name: "upstream".into(),
                            notification_id: 9,
                        },
                    ),
                    3 => recorder.insert_events_keyed(
                        &events,
                        None,
                        &KeyedOutcome {
                            key: "k".into(),
                            outcome: b"done".to_vec(),
                        },
                    ),
                    _ => recorder.insert_events(&events),
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    held.gate.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(first.join().expect("no panic").expect("stored"), [1]);
    let results: Vec<_> = queued
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .collect();
    let refused: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(
        refused.len(),
        1,
        "one of the two s1 saves conflicts: {results:?}"
    );
    assert!(refused[0].as_ref().expect_err("refused").is_conflict());
    let mut ids: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [2, 3, 4, 5, 6, 7], "one id each, none twice");
    // Fewer objects than saves: the queued ones went together.
    let objects = futures::executor::block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
        inner.list(Some(&root)),
    ))
    .expect("a listing");
    assert!(objects.len() < 7, "{} objects for 7 saves", objects.len());

    let fresh = ObjectRecorder::open(inner, root).expect("a fresh process");
    let log = fresh
        .select_notifications(&NotificationQuery::new(1, 100))
        .expect("the log");
    let mut streams: Vec<&str> = log.iter().map(|n| n.event.originator_id.as_str()).collect();
    assert_eq!(
        log.iter().map(|n| n.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    streams.sort_unstable();
    assert_eq!(streams, ["first", "s1", "s2", "s3", "s4", "s5", "s6"]);
    assert!(fresh.has_tracking_id("upstream", 9).expect("tracking"));
    assert_eq!(
        fresh.select_outcome("k").expect("an outcome"),
        Some(b"done".to_vec())
    );
}

/// Index segments of another log (a log restored from an older copy, or
/// removed while its index stayed): the segments do not hold what the log
/// holds, so they are passed over for the log's own saves, and written
/// again over as the log reaches them.
#[test]
fn segments_the_log_does_not_hold_are_passed_over_and_replaced() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let theirs =
        ObjectRecorder::open_with(inner.clone(), Path::from("a/events"), 10).expect("open");
    fill(&theirs, 25);
    // Log b: its own 15 saves (other streams), and a's segments.
    let plain =
        ObjectRecorder::open_with(inner.clone(), Path::from("b/events"), 1_000).expect("open");
    for n in 1..=15 {
        plain
            .insert_events(&[annals::testing::contract::event(
                &format!("t{n}"),
                1,
                "Dog.Registered",
            )])
            .expect("a save");
    }
    for name in [
        "00000000000000000001-00000000000000000010",
        "00000000000000000011-00000000000000000020",
    ] {
        let from =
            futures::executor::block_on(inner.get(&Path::from(format!("a/events-index/{name}"))))
                .expect("a's segment");
        let bytes = futures::executor::block_on(from.bytes()).expect("its bytes");
        futures::executor::block_on(inner.put(
            &Path::from(format!("b/events-index/{name}")),
            PutPayload::from(bytes),
        ))
        .expect("copied");
    }
    let log = |recorder: &ObjectRecorder| -> Vec<String> {
        recorder
            .select_notifications(&annals::persistence::NotificationQuery::new(1, 100))
            .expect("the log")
            .iter()
            .map(|n| {
                format!(
                    "{} {}@{}",
                    n.id, n.event.originator_id, n.event.originator_version
                )
            })
            .collect()
    };
    let expected = log(&plain);
    let b = ObjectRecorder::open_with(inner.clone(), Path::from("b/events"), 10).expect("open b");
    assert_eq!(log(&b), expected, "b's own saves, not a's segments");
    assert!(b
        .select_events("s3", &annals::persistence::EventQuery::all())
        .expect("a stream")
        .is_empty());
    // The open wrote segment 1-10 over a's from b's saves; saves 16 to 20
    // make segment 11-20, over a's too.
    for n in 16..=20u64 {
        let ids = b
            .insert_events(&[annals::testing::contract::event(
                &format!("t{n}"),
                1,
                "Dog.Registered",
            )])
            .expect("a save");
        assert_eq!(ids, [n], "the next id of b's log");
    }
    let counting = Arc::new(Probe::new(inner.clone()));
    let cold =
        ObjectRecorder::open_with(counting.clone(), Path::from("b/events"), 10).expect("open");
    assert_eq!(
        (
            counting.gets.load(Ordering::SeqCst),
            counting.save_gets.load(Ordering::SeqCst)
        ),
        (2 + 1 + 1, 1 + 1),
        "b's two segments, save 20 to check them, and the probe for save 21"
    );
    assert_eq!(log(&cold).len(), 20);
    assert_eq!(log(&cold)[..15], expected[..]);
}

/// A save of a group that takes what an earlier one takes (a version, a
/// key) is not refused for it: it waits for the earlier one to be settled,
/// and is then checked against the log. Here the earlier one loses to
/// another process's save (its object's name is taken, and what it reads
/// there conflicts with it), so the later ones are stored.
#[test]
fn a_save_is_refused_for_what_is_stored_not_for_its_group() {
    use annals::persistence::KeyedOutcome;
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let held = Arc::new(Probe::held(inner.clone()));
    let root = Path::from("school/events");
    let recorder = Arc::new(ObjectRecorder::open(held.clone(), root.clone()).expect("open"));
    let rival = ObjectRecorder::open(inner.clone(), root.clone()).expect("another process");
    let event = |stream: &str| annals::testing::contract::event(stream, 1, "Dog.Registered");
    let key = || KeyedOutcome {
        key: "K".into(),
        outcome: b"done".to_vec(),
    };
    let first = {
        let recorder = recorder.clone();
        std::thread::spawn(move || recorder.insert_events(&[event("first")]))
    };
    held.wait_for_puts(1);
    // Queued in this order: a takes Y, X and key K; b key K; c X.
    let mut queued = Vec::new();
    for n in 0..3 {
        let recorder = recorder.clone();
        queued.push(std::thread::spawn(move || match n {
            0 => recorder.insert_events_keyed(&[event("Y"), event("X")], None, &key()),
            1 => recorder.insert_events_keyed(&[event("Z")], None, &key()),
            _ => recorder.insert_events(&[event("X")]),
        }));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Save 1 is written; the group's write (a alone: b and c take what a
    // takes) waits at the gate while another process stores Y at save 2.
    held.gate.store(1, Ordering::SeqCst);
    held.wait_for_puts(2);
    rival.insert_events(&[event("Y")]).expect("the rival's Y");
    held.gate.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(first.join().expect("no panic").expect("first"), [1]);
    let [a, b, c]: [_; 3] = queued
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .collect::<Vec<_>>()
        .try_into()
        .expect("three");
    assert!(a.expect_err("Y is the rival's").is_conflict());
    b.expect("key K was never stored: b takes it");
    c.expect("X was never stored: c takes it");
    let fresh = ObjectRecorder::open(inner, root).expect("a fresh process");
    assert_eq!(
        fresh.select_outcome("K").expect("the key"),
        Some(b"done".to_vec())
    );
    let x = fresh
        .select_events("X", &annals::persistence::EventQuery::all())
        .expect("X");
    assert_eq!(x.len(), 1);
}

/// A writer that panics while it writes a group settles every save of
/// it with an error (none waits forever), and the store goes on.
#[test]
fn a_writer_that_panics_settles_its_group() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let held = Arc::new(Probe::held(inner.clone()));
    let root = Path::from("school/events");
    let recorder = Arc::new(ObjectRecorder::open(held.clone(), root.clone()).expect("open"));
    let event = |stream: &str| annals::testing::contract::event(stream, 1, "Dog.Registered");
    let save = |stream: &'static str| {
        let recorder = recorder.clone();
        std::thread::spawn(move || recorder.insert_events(&[event(stream)]))
    };
    let first = save("first");
    held.wait_for_puts(1);
    let queued = [save("a"), save("b")];
    std::thread::sleep(std::time::Duration::from_millis(200));
    held.panic_at.store(2, Ordering::SeqCst);
    held.gate.store(usize::MAX, Ordering::SeqCst);
    assert_eq!(first.join().expect("no panic").expect("first"), [1]);
    let outcomes: Vec<_> = queued.into_iter().map(|t| t.join()).collect();
    // The one that wrote the group panicked; the other was told.
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
    let told = outcomes
        .into_iter()
        .find_map(Result::ok)
        .expect("the other returned");
    let message = told.expect_err("not written").report().to_string();
    assert!(message.contains("panicked"), "{message}");
    assert_eq!(
        recorder
            .insert_events(&[event("c")])
            .expect("the store goes on"),
        [2]
    );
    let fresh = ObjectRecorder::open(inner, root).expect("a fresh process");
    let log: Vec<String> = fresh
        .select_notifications(&annals::persistence::NotificationQuery::new(1, 10))
        .expect("the log")
        .into_iter()
        .map(|n| n.event.originator_id)
        .collect();
    assert_eq!(log, ["first", "c"]);
}

/// Segments are merged ten to one as the log grows, and a cold start
/// reads the merged ones: with a segment every 2 saves, 45 saves are read
/// from segments 1-20, 21-40, 41-42 and 43-44 (not 22 segments), and the
/// answers are those of a process that read every save.
#[test]
fn segments_are_merged_ten_to_one() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), 2).expect("open");
    fill(&writer, 45);
    let expected = answers(&writer, 45);
    let listed = futures::executor::block_on(futures::TryStreamExt::try_collect::<Vec<_>>(
        inner.list(Some(&Path::from("school/events-index"))),
    ))
    .expect("a listing");
    let names: Vec<String> = listed
        .iter()
        .filter_map(|meta| meta.location.filename().map(str::to_owned))
        .collect();
    for merged in [
        "00000000000000000001-00000000000000000020",
        "00000000000000000021-00000000000000000040",
    ] {
        assert!(names.iter().any(|n| n == merged), "{merged} in {names:?}");
    }
    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), root, 2).expect("a cold start");
    let (gets, save_gets) = (
        counting.gets.load(Ordering::SeqCst),
        counting.save_gets.load(Ordering::SeqCst),
    );
    assert_eq!(
        (gets - save_gets, save_gets),
        (4, 1 + 1 + 1),
        "four segments; save 44 to check them, save 45 and the probe"
    );
    assert_eq!(answers(&cold, 45), expected);
}

/// Whether the object of save `n` under `root` is a packed save's
/// tombstone.
fn is_tombstone(store: &Arc<dyn ObjectStore>, root: &Path, n: u64) -> bool {
    let path = root.clone().join(format!("{n:020}").as_str());
    let bytes = futures::executor::block_on(async {
        store.get(&path).await.expect("the save").bytes().await
    })
    .expect("its bytes");
    String::from_utf8_lossy(&bytes).contains("\"packed\"")
}

/// Compaction folds each run of 10 saves with 10 newer after it into a
/// pack and leaves tombstones at their names; every answer (the log, a
/// topic page, streams, tracking, keys) stays the same, in the recorder
/// that compacted and in fresh ones, with and without index segments;
/// a log reader then reads a pack per 10 saves; a second compaction has
/// nothing to do.
#[test]
fn compaction_packs_old_saves_and_every_answer_stays() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    fill(&writer, 95);
    let expected = answers(&writer, 95);

    let done = writer.compact().expect("compaction");
    // Saves 1 to 80: the runs from 1, 11, ... 71 (81..90 has only 5 after it).
    assert_eq!((done.packs, done.saves), (8, 80));
    assert!((1..=80).all(|n| is_tombstone(&inner, &root, n)));
    assert!(!(81..=95).any(|n| is_tombstone(&inner, &root, n)));
    assert_eq!(answers(&writer, 95), expected, "the compacting recorder");
    assert_eq!(writer.compact().expect("again"), Default::default());

    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), root.clone(), 10).expect("open");
    counting.reset();
    let log = cold
        .select_notifications(&annals::persistence::NotificationQuery::new(1, 10_000))
        .expect("the log");
    assert_eq!(log.len(), 190);
    let (gets, save_gets) = (
        counting.gets.load(Ordering::SeqCst),
        counting.save_gets.load(Ordering::SeqCst),
    );
    // A batch of 32 saves (tombstones until the packs are listed), then
    // a pack per 10 saves and the 15 saves after the packs: far fewer
    // than a GET a save.
    assert!(
        save_gets <= 32 + 15 + 1 && gets - save_gets <= 8,
        "{save_gets} save GETs and {} others for 95 saves",
        gets - save_gets
    );
    assert_eq!(answers(&cold, 95), expected, "a cold start with segments");

    // Without segments, a cold start reads the tombstones and their packs.
    let segments: Vec<Path> = futures::executor::block_on(async {
        use futures::TryStreamExt as _;
        inner
            .list(Some(&Path::from("school/events-index")))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
    })
    .expect("the segments");
    assert!(!segments.is_empty());
    for path in &segments {
        futures::executor::block_on(inner.delete(path)).expect("delete a segment");
    }
    let bare = ObjectRecorder::open_with(inner.clone(), root.clone(), 1_000).expect("open");
    assert_eq!(
        answers(&bare, 95),
        expected,
        "a cold start without segments"
    );
}

/// Packs larger than the recorder's cache of saves (4,096): a cold start
/// without segments, reading the tombstones in order, reads each pack a
/// few times, not once for every save that the pack's own caching pushed
/// out of the cache.
#[test]
fn a_pack_larger_than_the_cache_is_read_a_few_times() {
    use annals::persistence::StoredEvent;
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    // No segments: a size beyond the log's.
    let size = 4_500;
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), size).expect("open");
    for n in 0..2 * size {
        writer
            .insert_events(&[StoredEvent {
                originator_id: format!("dog-{n}"),
                originator_version: 1,
                topic: "Registered".into(),
                state: vec![1],
            }])
            .expect("a save");
    }
    assert_eq!(writer.compact().expect("compaction").packs, 1);
    let segments: Vec<Path> = futures::executor::block_on(async {
        use futures::TryStreamExt as _;
        inner
            .list(Some(&Path::from("school/events-index")))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
    })
    .expect("the segments");
    for path in &segments {
        futures::executor::block_on(inner.delete(path)).expect("delete a segment");
    }
    let counting = Arc::new(Probe::new(inner.clone()));
    let cold = ObjectRecorder::open_with(counting.clone(), root, size).expect("open");
    let (gets, save_gets) = (
        counting.gets.load(Ordering::SeqCst),
        counting.save_gets.load(Ordering::SeqCst),
    );
    assert!(
        gets - save_gets <= 4,
        "{} pack reads for one pack",
        gets - save_gets
    );
    assert_eq!(
        cold.select_events("dog-7", &annals::persistence::EventQuery::all())
            .expect("a packed save")
            .len(),
        1
    );
}

/// A compaction cut off at any object call (before or after the call
/// takes effect) leaves a log that answers as before, in the recorder
/// and in a fresh one; the next compaction finishes the job.
#[test]
fn a_compaction_cut_off_at_any_object_call_changes_no_answer() {
    for after in [false, true] {
        for n in (1..=46).step_by(3).chain([12, 13, 22, 23, 24]) {
            let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
            let root = Path::from("school/events");
            let faulty = Arc::new(Probe::faulty(inner.clone(), after));
            let recorder = ObjectRecorder::open_with(faulty.clone(), root.clone(), 10)
                .expect("open through the faults");
            fill(&recorder, 35);
            let expected = answers(&recorder, 35);
            faulty.calls.store(0, Ordering::SeqCst);
            faulty.fail_at.store(n, Ordering::SeqCst);
            let outcome = recorder.compact();
            faulty.fail_at.store(0, Ordering::SeqCst);
            let case = format!("fault {n} (after: {after}): {outcome:?}");
            assert_eq!(answers(&recorder, 35), expected, "{case}: the recorder");
            let fresh = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
            assert_eq!(answers(&fresh, 35), expected, "{case}: a fresh recorder");

            fresh.compact().expect("the next compaction");
            assert!((1..=20).all(|n| is_tombstone(&inner, &root, n)), "{case}");
            let last = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
            assert_eq!(answers(&last, 35), expected, "{case}: after the next");
        }
    }
}

/// Writers and readers carry on while a compaction runs: a recorder
/// opened before it, whose index ends where the log then ended, loses
/// the race for a name that is now a tombstone, reads the save from its
/// pack, and stores its save after; a conflict is still one.
#[test]
fn writers_that_predate_a_compaction_store_after_it() {
    use annals::testing::contract::event;
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let early = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    fill(&early, 5);
    let late = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    // `early` has read 5 saves; `late` stores 30 more and compacts.
    for n in 6..=35 {
        late.insert_events(&[event(&format!("s{n}"), 1, "Dog.Registered")])
            .expect("a save");
    }
    let done = late.compact().expect("compaction");
    assert_eq!(done.saves, 20);

    // Save 6's name is a tombstone: `early` reads past it and the rest.
    let conflict = early.insert_events(&[event("s6", 1, "Dog.Registered")]);
    assert!(conflict.expect_err("s6@1 is stored").is_conflict());
    let ids = early
        .insert_events(&[event("new", 1, "Dog.Registered")])
        .expect("a save after the packed ones");
    // Saves 1-5 hold 2 events each, 6-35 one each.
    assert_eq!(ids, [41]);
    assert_eq!(
        late.select_events("s6", &annals::persistence::EventQuery::all())
            .expect("a packed stream")
            .len(),
        1
    );
}

/// A pack that is not what its tombstones say (corrupt, or gone) is an
/// error naming it, never another save's events.
#[test]
fn a_broken_pack_is_an_error_naming_it() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let root = Path::from("school/events");
    let writer = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
    fill(&writer, 25);
    assert_eq!(writer.compact().expect("compaction").packs, 1);
    let pack = Path::from(format!("school/events-packs/{:020}-{:020}", 1, 10));
    for broken in [Some(&b"{\"first_save\": 1"[..]), None] {
        match broken {
            Some(bytes) => futures::executor::block_on(inner.put(&pack, bytes.to_vec().into()))
                .map(drop)
                .expect("corrupt the pack"),
            None => futures::executor::block_on(inner.delete(&pack)).expect("remove it"),
        }
        let fresh = ObjectRecorder::open_with(inner.clone(), root.clone(), 10).expect("open");
        let err = fresh
            .select_events("s3", &annals::persistence::EventQuery::all())
            .expect_err("the pack is broken");
        let report = err.report().to_string();
        assert!(
            report.contains("00000000000000000001-00000000000000000010"),
            "{report}"
        );
    }
}

/// A snapshot at the packing: `compact_with` names each stream with
/// events in a packed run, and the application snapshots it there, so a
/// get reads the snapshot, not the pack.
#[test]
fn an_application_snapshots_the_streams_it_packs() {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let config = ObjectConfig::with_store(inner, "kennel");
    let app = Application::builder("School")
        .store(config.clone())
        .snapshotting(true)
        .build()
        .expect("the application");
    let saves = 2 * annals::persistence::object::SEGMENT_SAVES + 1;
    let mut ids = Vec::new();
    for n in 0..saves {
        let mut dog = Dog::register(format!("dog {n}"));
        dog.add_trick("sit".into());
        app.save(&mut dog).expect("a save");
        ids.push(dog.id());
    }
    let mut named = 0;
    let done = config
        .compact_with("School", &mut |stream, version| {
            named += 1;
            assert_eq!(version, 2);
            let id: uuid::Uuid = stream.parse().expect("a dog's id");
            app.take_snapshot::<Dog>(id)
        })
        .expect("compaction");
    assert_eq!((done.packs, done.saves, named), (1, 1000, 1000));
    let snapshots = app.snapshots().expect("snapshotting");
    assert_eq!(snapshots.versions::<Dog>(ids[0]).expect("versions"), [2]);
    assert_eq!(snapshots.versions::<Dog>(ids[999]).expect("versions"), [2]);
    assert!(snapshots
        .versions::<Dog>(ids[1000])
        .expect("versions")
        .is_empty());
    let fresh = Application::builder("School")
        .store(config)
        .snapshotting(true)
        .build()
        .expect("the application");
    assert_eq!(
        fresh.get::<Dog>(ids[0]).expect("a packed dog").name,
        "dog 0"
    );
}

/// A patient's name is sealed with the patient's key, an object under
/// `clinic/events-keys/`; forgetting the patient deletes it, and the name
/// reads as forgotten, in this application and in a fresh one, while the
/// events stay. On a directory, the name is in no file, and the key's
/// file is gone.
#[test]
fn a_forgotten_patient_reads_as_forgotten_here_and_after_a_restart_on_a_directory() {
    let dir = temp_dir().join("clinic");
    forgotten_patient(dir.to_str().expect("a UTF-8 path"), Some(&dir));
}

#[test]
fn a_forgotten_patient_reads_as_forgotten_here_and_after_a_restart_on_s3() {
    match s3_location() {
        Some(location) => forgotten_patient(
            &format!("{location}/clinic-{}", Uuid::new_v4().simple()),
            None,
        ),
        None => annals_tests::skipped("a_forgotten_patient_reads_as_forgotten on S3"),
    }
}

#[test]
fn a_forgotten_patient_reads_as_forgotten_here_and_after_a_restart_on_azure() {
    match azure_location() {
        Some(location) => forgotten_patient(
            &format!("{location}/clinic-{}", Uuid::new_v4().simple()),
            None,
        ),
        None => annals_tests::skipped("a_forgotten_patient_reads_as_forgotten on Azure"),
    }
}

/// Every file under `dir`, read.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read the directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read a file");
            files.push((path, bytes));
        }
    }
    files
}

fn forgotten_patient(location: &str, dir: Option<&std::path::Path>) {
    use annals_tests::clinic::Patient;

    let key = annals::cipher::create_key();
    let open = || {
        Application::builder("Clinic")
            .store(ObjectConfig::location(location))
            .personal_data_key(&key)
            .build()
            .unwrap_or_else(|e| panic!("open the clinic at {location}: {}", e.report()))
    };
    let app = open();
    let mut ada = Patient::admit("Ada Lovelace".into());
    ada.visit();
    app.save(&mut ada).expect("save Ada");
    let mut bob = Patient::admit("Bob Babbage".into());
    app.save(&mut bob).expect("save Bob");
    assert_eq!(
        app.get::<Patient>(ada.id()).expect("read Ada").name,
        "Ada Lovelace"
    );

    let keys_dir = dir.map(|dir| dir.join("clinic").join("events-keys"));
    let key_file = |id: Uuid| {
        let hex: String = id.to_string().bytes().map(|b| format!("{b:02x}")).collect();
        keys_dir
            .as_ref()
            .map(|keys| keys.join(format!("{hex}.json")))
    };
    if let Some(dir) = dir {
        for (path, bytes) in files_under(dir) {
            assert!(
                !bytes.windows(12).any(|w| w == b"Ada Lovelace"),
                "the name is in {} in the clear",
                path.display()
            );
        }
        let ada_key = key_file(ada.id()).expect("a directory");
        assert!(ada_key.is_file(), "{} is missing", ada_key.display());
    }

    assert!(app.forget(&ada.id().to_string()).expect("forget Ada"));
    assert!(
        !app.forget(&ada.id().to_string()).expect("forget Ada"),
        "forgotten once"
    );
    let got = app.get::<Patient>(ada.id()).expect("read Ada");
    assert_eq!((got.name.as_str(), got.visits), ("(forgotten)", 2));

    drop(app);
    let fresh = open();
    let got = fresh.get::<Patient>(ada.id()).expect("read Ada");
    assert_eq!(
        (got.name.as_str(), got.visits),
        ("(forgotten)", 2),
        "the events stay"
    );
    assert_eq!(
        fresh.get::<Patient>(bob.id()).expect("read Bob").name,
        "Bob Babbage"
    );
    if let (Some(ada_key), Some(bob_key)) = (key_file(ada.id()), key_file(bob.id())) {
        assert!(!ada_key.exists(), "{} is left", ada_key.display());
        assert!(bob_key.is_file(), "{} is gone", bob_key.display());
    }
}

/// An object store around another that, at the first conditional
/// overwrite (`PutMode::Update`) of a key object, first puts another key
/// there, as a `forget` and a new save of the subject would between a
/// re-wrap's read and its write.
#[derive(Debug)]
struct Interloper {
    inner: Arc<dyn ObjectStore>,
    other: std::sync::Mutex<Option<Vec<u8>>>,
}

impl fmt::Display for Interloper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interloper({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Interloper {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if matches!(opts.mode, object_store::PutMode::Update(_)) {
            let other = self.other.lock().expect("not poisoned").take();
            if let Some(other) = other {
                self.inner.put(location, PutPayload::from(other)).await?;
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A re-wrap writes only over the key object as it read it: a key made
/// meanwhile (another id) is left as it is, on every store that can
/// write conditionally.
#[test]
fn a_rewrap_never_overwrites_a_key_made_since_it_read_the_object() {
    rewrap_meets_another_key(memory_store);
}

#[test]
fn a_rewrap_never_overwrites_a_key_made_since_it_read_the_object_on_azure() {
    rewrap_meets_another_key(azure_store);
}

fn rewrap_meets_another_key(make: MakeStore) {
    use annals::persistence::keys::{KeyStore, StoredKey};
    use annals::persistence::object::ObjectKeyStore;

    let Some((inner, prefix)) = make("rewrap") else {
        return annals_tests::skipped("a_rewrap_never_overwrites_a_key_made_since");
    };
    let log = prefix.clone().join("events");
    let first = StoredKey {
        subject: "ada".into(),
        key_id: vec![1; 8],
        wrapped: vec![1; 60],
    };
    let second = StoredKey {
        key_id: vec![2; 8],
        wrapped: vec![2; 60],
        ..first.clone()
    };
    // The second key's object, as the store writes it.
    let scratch = Arc::new(object_store::memory::InMemory::new());
    ObjectKeyStore::new(scratch.clone(), &log)
        .expect("a key store")
        .insert_key(&second)
        .expect("write the second key");
    // Named by the hex of the subject's bytes.
    let object = Path::from(format!("{log}-keys/{}.json", "616461"));
    let body = futures::executor::block_on(async {
        scratch
            .get(&object)
            .await
            .expect("the second key's object")
            .bytes()
            .await
            .expect("its bytes")
    });

    let keys = ObjectKeyStore::new(
        Arc::new(Interloper {
            inner: inner.clone(),
            other: std::sync::Mutex::new(Some(body.to_vec())),
        }),
        &log,
    )
    .expect("a key store");
    keys.insert_key(&first).expect("write the first key");
    assert!(
        !keys.rewrap_key(&first, &[9; 60]).expect("re-wrap"),
        "the key read was replaced before the write: nothing to re-wrap"
    );
    assert_eq!(keys.select_key("ada").expect("read"), Some(second.clone()));
    // With nothing in the way, the same store re-wraps.
    assert!(keys.rewrap_key(&second, &[9; 60]).expect("re-wrap"));
    assert_eq!(
        keys.select_key("ada")
            .expect("read")
            .expect("a key")
            .wrapped,
        vec![9; 60]
    );
}

/// A subject too long to name an object is refused, saying so; one that
/// fits, whatever its characters, is kept; an object under `events-keys/`
/// that is not a key's is an error naming it.
#[test]
fn key_subjects_name_objects_or_are_refused_saying_why() {
    use annals::persistence::keys::StoredKey;
    use annals::persistence::object::MAX_SUBJECT_BYTES;

    let dir = temp_dir().join("subjects");
    let keys = ObjectConfig::location(dir.to_str().expect("a UTF-8 path"))
        .open("Clinic")
        .unwrap()
        .keys
        .expect("the object store keeps keys");
    let key = |subject: &str| StoredKey {
        subject: subject.to_owned(),
        key_id: vec![1; 8],
        wrapped: vec![2; 60],
    };
    let longest = "é".repeat(MAX_SUBJECT_BYTES / 2);
    for subject in ["", "../../etc/passwd", "a/b", "a ", "#1", longest.as_str()] {
        assert_eq!(
            keys.insert_key(&key(subject)).unwrap(),
            key(subject),
            "{subject:?}"
        );
        assert_eq!(
            keys.select_key(subject).unwrap(),
            Some(key(subject)),
            "{subject:?}"
        );
    }
    let listed: Vec<String> = keys
        .select_keys(None, 100)
        .unwrap()
        .into_iter()
        .map(|k| k.subject)
        .collect();
    let mut expected = vec!["", "../../etc/passwd", "a/b", "a ", "#1", longest.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected);

    let long = format!("{longest}x");
    let err = keys
        .insert_key(&key(&long))
        .unwrap_err()
        .report()
        .to_string();
    assert!(
        err.contains(&format!("{} bytes", MAX_SUBJECT_BYTES + 1))
            && err.contains(&format!("at most {MAX_SUBJECT_BYTES}"))
            && err.contains("clinic/events-keys"),
        "{err}"
    );
    assert_eq!(keys.select_key(&long).unwrap(), None);
    assert!(!keys.delete_key(&long).unwrap());

    std::fs::write(dir.join("clinic/events-keys/notes.txt"), b"hello").unwrap();
    let err = keys
        .select_keys(None, 100)
        .unwrap_err()
        .report()
        .to_string();
    assert!(err.contains("notes.txt"), "{err}");
}
