//! Personal data: `#[personal]` fields sealed with their subject's key,
//! forgotten by erasing it, and the master key rotated; checked as an
//! auditor would, by scanning the store's bytes.

use annals::persistence::NotificationQuery;
use annals::prelude::*;
use annals::Error;
use serde::{Deserialize, Serialize};

/// A customer, whose name and emails are personal.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    #[personal(forgotten = "<forgotten>".to_owned())]
    name: String,
    #[personal]
    emails: Vec<String>,
    orders: u32,
}

#[aggregate]
impl Customer {
    /// Registers a customer.
    #[event("Registered")]
    pub fn register(#[personal(forgotten = "<forgotten>".to_owned())] name: String) -> Self {
        Customer {
            name,
            emails: Vec::new(),
            orders: 0,
        }
    }

    /// Adds an email address.
    #[event("EmailAdded")]
    pub fn add_email(&mut self, #[personal] email: String) {
        self.emails.push(email);
    }

    /// Counts an order.
    #[event("Ordered")]
    pub fn order(&mut self) {
        self.orders += 1;
    }
}

/// One person's data across aggregates: an order names its customer.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    #[subject]
    customer: Uuid,
    #[personal]
    address: String,
}

#[aggregate]
impl Delivery {
    /// Plans a delivery to the customer's address.
    #[event("Planned")]
    pub fn plan(#[subject] customer: Uuid, #[personal] address: String) -> Self {
        Delivery { customer, address }
    }
}

fn sqlite_app(db: &str, key: &str) -> Application {
    Application::builder("Shop")
        .sqlite(db)
        .personal_data_key(key)
        .snapshotting(true)
        .build()
        .expect("open")
}

/// Every byte the database keeps: the file, its WAL and shared memory.
fn store_bytes(db: &str) -> Vec<u8> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::read(format!("{db}{suffix}")).ok())
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn personal_fields_are_never_stored_in_the_clear_and_forgetting_erases_them() {
    let db = annals_tests::stores::temp_sqlite("personal");
    let key = annals::cipher::create_key();
    let app = sqlite_app(&db, &key);
    let mut ada = Customer::register("Ada Lovelace".into());
    ada.add_email("ada@example.org".into());
    ada.order();
    app.save(&mut ada).expect("no error");
    app.take_snapshot::<Customer>(ada.id()).expect("no error");
    let mut delivery = Delivery::plan(ada.id(), "12 Analytical Row".into());
    app.save(&mut delivery).expect("no error");
    let mut bob = Customer::register("Bob Babbage".into());
    app.save(&mut bob).expect("no error");

    let got = app.get::<Customer>(ada.id()).expect("no error");
    assert_eq!(
        (got.name.as_str(), got.emails.len(), got.orders),
        ("Ada Lovelace", 1, 1)
    );
    let bytes = store_bytes(&db);
    for secret in [
        "Ada Lovelace",
        "ada@example.org",
        "12 Analytical Row",
        "Bob Babbage",
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret} is in the store's bytes"
        );
    }
    // What is not personal stays readable.
    assert!(contains(&bytes, b"Customer.Ordered"));

    // The right to erasure, for Ada: her customer id is the subject of
    // her own events and of the delivery.
    assert!(app.forget(&ada.id().to_string()).expect("no error"));
    assert!(
        !app.forget(&ada.id().to_string()).expect("no error"),
        "forgotten once"
    );
    let got = app.get::<Customer>(ada.id()).expect("no error");
    assert_eq!(got.name, "<forgotten>");
    assert!(got.emails.iter().all(String::is_empty), "{:?}", got.emails);
    assert_eq!((got.version(), got.orders), (3, 1), "the events stay");
    assert_eq!(
        app.get::<Delivery>(delivery.id())
            .expect("no error")
            .address,
        ""
    );
    // From its events alone too, not the snapshot.
    let fresh = sqlite_app(&db, &key);
    assert_eq!(
        fresh.get::<Customer>(ada.id()).expect("no error").name,
        "<forgotten>"
    );
    // Bob is untouched.
    assert_eq!(
        fresh.get::<Customer>(bob.id()).expect("no error").name,
        "Bob Babbage"
    );
    // Nothing of Ada's key is left in any page of the database or its WAL.
    let stored = annals::rusqlite::Connection::open(&db).expect("no error");
    let keys: i64 = stored
        .query_row("SELECT count(*) FROM stored_data_keys", [], |r| r.get(0))
        .expect("no error");
    assert_eq!(keys, 1, "only Bob's key is left");
    drop(stored);

    // A new save for a forgotten subject gets a new key; the old data
    // stays forgotten.
    let mut again = fresh.get::<Customer>(ada.id()).expect("no error");
    again.add_email("new@example.org".into());
    fresh.save(&mut again).expect("no error");
    let got = fresh.get::<Customer>(ada.id()).expect("no error");
    assert_eq!(got.name, "<forgotten>");
    assert_eq!(
        got.emails.last().map(String::as_str),
        Some("new@example.org")
    );
}

#[test]
fn a_follower_after_the_forget_sees_the_forgotten_form() {
    let app = Application::builder("Shop")
        .personal_data_key(annals::cipher::create_key())
        .build()
        .expect("no error");
    let mut ada = Customer::register("Ada".into());
    app.save(&mut ada).expect("no error");
    let before: Vec<_> = app
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect("no error");
    let decoded = app
        .mapper()
        .decode::<Customer>(&before[0].event)
        .expect("no error");
    assert!(matches!(decoded.event, CustomerEvent::Registered { ref name } if name == "Ada"));
    app.forget(&ada.id().to_string()).expect("no error");
    let after = app
        .mapper()
        .decode::<Customer>(&before[0].event)
        .expect("no error");
    assert!(matches!(after.event, CustomerEvent::Registered { ref name } if name == "<forgotten>"));
    // The stored bytes did not change: a hash chain over them holds.
    assert_eq!(
        app.select_notifications(&NotificationQuery::new(1, 10))
            .expect("no error")[0]
            .event,
        before[0].event
    );
}

#[test]
fn personal_data_without_a_master_key_or_in_the_python_codec_is_refused() {
    let app = Application::builder("Shop").build().expect("no error");
    let mut ada = Customer::register("Ada".into());
    match app.save(&mut ada) {
        Err(Error::Config { setting, message }) => {
            assert_eq!(setting, "PERSONAL_DATA_KEY", "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        app.select_notifications(&NotificationQuery::new(1, 10))
            .expect("no error")
            .len(),
        0
    );
    let app = Application::builder("Shop")
        .personal_data_key(annals::cipher::create_key())
        .codec(annals::mapper::Codec::Python)
        .build()
        .expect("no error");
    match app.save(&mut ada) {
        Err(Error::Config { setting, message }) => {
            assert_eq!(setting, "CODEC", "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn rotating_the_master_key_rewraps_every_key_and_rewrites_no_event() {
    let db = annals_tests::stores::temp_sqlite("rotation");
    rotation(&|key: &str, previous: Option<&str>| {
        let builder = Application::builder("Shop")
            .sqlite(&db)
            .personal_data_key(key);
        match previous {
            Some(old) => builder.previous_personal_data_keys([old]),
            None => builder,
        }
        .build()
        .expect("open")
    });
}

#[test]
fn on_postgres_keys_are_kept_rotated_and_forgotten() {
    let Some(config) = annals_tests::stores::postgres_server() else {
        println!("SKIPPED: set POSTGRES_DBNAME");
        return;
    };
    annals_tests::stores::drop_postgres_tables(&config, "Shop");
    let open = |key: &str, previous: Option<&str>| {
        let builder = Application::builder("Shop")
            .persistence(annals::Persistence::Postgres(config.clone()))
            .personal_data_key(key)
            .snapshotting(true);
        match previous {
            Some(old) => builder.previous_personal_data_keys([old]),
            None => builder,
        }
        .build()
        .expect("open")
    };
    rotation(&open);
    annals_tests::stores::drop_postgres_tables(&config, "Shop");
    let key = annals::cipher::create_key();
    let app = open(&key, None);
    let mut ada = Customer::register("Ada Lovelace".into());
    app.save(&mut ada).expect("no error");
    app.take_snapshot::<Customer>(ada.id()).expect("no error");
    let mut delivery = Delivery::plan(ada.id(), "12 Analytical Row".into());
    app.save(&mut delivery).expect("no error");
    let mut client = annals_tests::stores::postgres_client(&config);
    let events = annals_tests::stores::qualified(&config, "shop_events");
    let snapshots = annals_tests::stores::qualified(&config, "shop_snapshots");
    for table in [&events, &snapshots] {
        let found: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE position('Ada Lovelace' in convert_from(state, 'UTF8')) > 0"),
                &[],
            )
            .expect("no error")
            .get(0);
        assert_eq!(found, 0, "the name is in {table} in the clear");
    }
    assert!(app.forget(&ada.id().to_string()).expect("no error"));
    assert_eq!(
        open(&key, None)
            .get::<Customer>(ada.id())
            .expect("no error")
            .name,
        "<forgotten>"
    );
    assert_eq!(
        open(&key, None)
            .get::<Delivery>(delivery.id())
            .expect("no error")
            .address,
        ""
    );
    let keys = annals_tests::stores::qualified(&config, "shop_data_keys");
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM {keys}"), &[])
        .expect("no error")
        .get(0);
    assert_eq!(left, 0);
    annals_tests::stores::drop_postgres_tables(&config, "Shop");
}

/// Five customers saved under one master key, read under a second with
/// the first as a previous key, re-wrapped, and read under the second
/// alone.
fn rotation(open: &dyn Fn(&str, Option<&str>) -> Application) {
    let (old, new) = (annals::cipher::create_key(), annals::cipher::create_key());
    let app = open(&old, None);
    let mut customers: Vec<Customer> = (0..5)
        .map(|i| Customer::register(format!("customer {i}")))
        .collect();
    app.save(customers.as_mut_slice()).expect("no error");
    let log = app
        .select_notifications(&NotificationQuery::new(1, 100))
        .expect("no error");

    // With the new key alone, the old keys do not open: an error, never
    // "forgotten".
    let wrong = open(&new, None);
    let err = wrong
        .get::<Customer>(customers[0].id())
        .expect_err("an error");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain += &format!(": {cause}");
        source = cause.source();
    }
    assert!(chain.contains("PERSONAL_DATA_KEY"), "{chain}");

    let rotating = open(&new, Some(&old));
    assert_eq!(
        rotating
            .get::<Customer>(customers[0].id())
            .expect("no error")
            .name,
        "customer 0"
    );
    let rotation = rotating.rotate_keys().expect("no error");
    assert_eq!((rotation.rewrapped, rotation.current), (5, 0));
    assert_eq!(rotating.rotate_keys().expect("no error").current, 5);

    let rotated = open(&new, None);
    for (i, customer) in customers.iter().enumerate() {
        assert_eq!(
            rotated
                .get::<Customer>(customer.id())
                .expect("no error")
                .name,
            format!("customer {i}")
        );
    }
    assert_eq!(
        rotated
            .select_notifications(&NotificationQuery::new(1, 100))
            .expect("no error"),
        log,
        "no event rewritten"
    );
}

/// The explicit style's events, marked on their fields.
mod explicit {
    use super::*;

    /// A member, in the explicit style.
    #[aggregate]
    #[derive(Debug, Clone)]
    pub(crate) struct Member {
        name: String,
    }

    /// A member's events.
    #[derive(Debug, Clone, Event)]
    #[annals(aggregate = "Member")]
    pub(crate) enum MemberEvent {
        /// Joined.
        #[annals(create)]
        Joined {
            /// The member's name, forgotten as "?".
            #[personal(forgotten = "?".to_owned())]
            name: String,
        },
    }

    #[aggregate(events = MemberEvent)]
    impl annals::Apply for Member {
        fn create(event: MemberEvent) -> Result<Self, MemberEvent> {
            let MemberEvent::Joined { name } = event;
            Ok(Member { name })
        }

        fn apply(&mut self, _: MemberEvent) {}
    }

    #[test]
    fn explicit_events_seal_their_personal_fields() {
        let app = Application::builder("Club")
            .personal_data_key(annals::cipher::create_key())
            .build()
            .expect("no error");
        let mut ada =
            Member::from_event(MemberEvent::Joined { name: "Ada".into() }).expect("no error");
        app.save(&mut ada).expect("no error");
        let stored = app
            .select_notifications(&NotificationQuery::new(1, 1))
            .expect("no error");
        assert!(!String::from_utf8_lossy(&stored[0].event.state).contains("Ada"));
        assert_eq!(app.get::<Member>(ada.id()).expect("no error").name, "Ada");
        app.forget(&ada.id().to_string()).expect("no error");
        assert_eq!(app.get::<Member>(ada.id()).expect("no error").name, "?");
    }
}

/// `{:?}` of an event goes to logs, panic and error messages: it shows no
/// personal field's value, which forgetting could not erase there.
#[test]
fn the_debug_of_an_event_shows_no_personal_field() {
    let mut customer = Customer::register("Ada Lovelace".into());
    customer.add_email("ada@example.com".into());
    customer.order();
    let debug = format!("{:?}", customer.pending_events());
    assert!(!debug.contains("Ada Lovelace"), "{debug}");
    assert!(!debug.contains("ada@example.com"), "{debug}");
    assert!(debug.contains("<personal>"), "{debug}");
    assert!(debug.contains("Ordered"), "{debug}");
}

/// A key store where another writer always gives the subject a key
/// first (one this reader cannot see yet): every key written is lost.
struct AlwaysBeaten;

impl annals::persistence::keys::KeyStore for AlwaysBeaten {
    fn select_key(&self, _: &str) -> annals::Result<Option<annals::persistence::keys::StoredKey>> {
        Ok(None)
    }
    fn insert_key(
        &self,
        key: &annals::persistence::keys::StoredKey,
    ) -> annals::Result<annals::persistence::keys::StoredKey> {
        Ok(annals::persistence::keys::StoredKey {
            key_id: vec![0xee; key.key_id.len()],
            ..key.clone()
        })
    }
    fn delete_key(&self, _: &str) -> annals::Result<bool> {
        Ok(false)
    }
    fn select_keys(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> annals::Result<Vec<annals::persistence::keys::StoredKey>> {
        Ok(Vec::new())
    }
    fn rewrap_key(
        &self,
        _: &annals::persistence::keys::StoredKey,
        _: &[u8],
    ) -> annals::Result<bool> {
        Ok(false)
    }
}

#[derive(Debug, Clone)]
struct BeatenStore(std::sync::Arc<annals::persistence::memory::MemoryRecorder>);

impl annals::persistence::Store for BeatenStore {
    fn name(&self) -> &'static str {
        "beaten"
    }
    fn open(&self, _: &str) -> annals::Result<annals::persistence::Recorders> {
        Ok(
            annals::persistence::Recorders::new(self.0.clone(), self.0.clone())
                .with_keys(std::sync::Arc::new(AlwaysBeaten)),
        )
    }
}

/// A save whose keys lose to other writers' on every try stores nothing
/// (a conflict, retried by the caller): never events sealed with a key
/// the store does not hold, which no one could read.
#[test]
fn a_save_whose_keys_keep_losing_stores_nothing_sealed_with_them() {
    let store = BeatenStore(std::sync::Arc::new(
        annals::persistence::memory::MemoryRecorder::new(),
    ));
    let app = Application::builder("Shop")
        .store(store)
        .personal_data_key(annals::cipher::create_key())
        .build()
        .expect("open");
    let mut customer = Customer::register("Ada".into());
    let saved = app.save(&mut customer);
    assert!(matches!(saved, Err(Error::Conflict { .. })), "{saved:?}");
    assert_eq!(app.last_notification_id().expect("read"), None);
}

/// The same for a process application's save: its policy's events are not
/// stored sealed with a key the store does not hold.
#[test]
fn a_policy_whose_keys_keep_losing_stores_nothing_sealed_with_them() {
    use annals::system::{Policies, ProcessApplication};
    let leader = Application::builder("Shop")
        .personal_data_key(annals::cipher::create_key())
        .build()
        .expect("open");
    leader
        .save(&mut Customer::register("Ada".into()))
        .expect("save");
    let follower = Application::builder("Copies")
        .store(BeatenStore(std::sync::Arc::new(
            annals::persistence::memory::MemoryRecorder::new(),
        )))
        .personal_data_key(annals::cipher::create_key())
        .build()
        .expect("open");
    let copies = ProcessApplication::new(
        std::sync::Arc::new(follower),
        Policies::new().on::<Customer>(|event, processing| match &event.event {
            CustomerEvent::Registered { name } => {
                processing.save(&mut Customer::register(name.clone()))
            }
            _ => Ok(()),
        }),
    );
    let pulled = copies.pull(&leader, 10);
    assert!(matches!(pulled, Err(Error::Conflict { .. })), "{pulled:?}");
    assert_eq!(copies.app().last_notification_id().expect("read"), None);
}

/// A parcel whose snapshot alone seals the address (its events keep it
/// plain): its key is made when the first snapshot is taken.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parcel {
    customer: Uuid,
    #[personal]
    address: String,
}

#[aggregate]
impl Parcel {
    /// Sends a parcel to the customer's address.
    #[event("Sent")]
    pub fn send(customer: Uuid, address: String) -> Self {
        Parcel { customer, address }
    }
}

/// Memory keys where, after the first, every key written loses to another
/// writer's (one this reader cannot see yet).
#[derive(Default)]
struct BeatenAfterFirst {
    keys: annals::persistence::keys::MemoryKeyStore,
    written: std::sync::atomic::AtomicUsize,
}

impl annals::persistence::keys::KeyStore for BeatenAfterFirst {
    fn select_key(
        &self,
        subject: &str,
    ) -> annals::Result<Option<annals::persistence::keys::StoredKey>> {
        self.keys.select_key(subject)
    }
    fn insert_key(
        &self,
        key: &annals::persistence::keys::StoredKey,
    ) -> annals::Result<annals::persistence::keys::StoredKey> {
        if self
            .written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            return self.keys.insert_key(key);
        }
        AlwaysBeaten.insert_key(key)
    }
    fn delete_key(&self, subject: &str) -> annals::Result<bool> {
        self.keys.delete_key(subject)
    }
    fn select_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> annals::Result<Vec<annals::persistence::keys::StoredKey>> {
        self.keys.select_keys(after, limit)
    }
    fn rewrap_key(
        &self,
        key: &annals::persistence::keys::StoredKey,
        wrapped: &[u8],
    ) -> annals::Result<bool> {
        self.keys.rewrap_key(key, wrapped)
    }
}

#[derive(Clone)]
struct BeatenLaterStore(
    std::sync::Arc<annals::persistence::memory::MemoryRecorder>,
    std::sync::Arc<annals::persistence::memory::MemoryRecorder>,
    std::sync::Arc<BeatenAfterFirst>,
);

impl std::fmt::Debug for BeatenLaterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeatenLaterStore")
    }
}

impl annals::persistence::Store for BeatenLaterStore {
    fn name(&self) -> &'static str {
        "beaten later"
    }
    fn open(&self, _: &str) -> annals::Result<annals::persistence::Recorders> {
        Ok(
            annals::persistence::Recorders::new(self.0.clone(), self.1.clone())
                .with_keys(self.2.clone()),
        )
    }
}

/// A snapshot whose key loses to another writer's on both tries is not
/// stored: sealed with a key the store does not hold, it would read as
/// forgotten while the events still hold the data.
#[test]
fn a_snapshot_sealed_with_a_key_not_stored_is_not_kept() {
    use annals::persistence::memory::MemoryRecorder;
    let store = BeatenLaterStore(
        std::sync::Arc::new(MemoryRecorder::new()),
        std::sync::Arc::new(MemoryRecorder::new()),
        std::sync::Arc::default(),
    );
    let key = annals::cipher::create_key();
    let open = || {
        Application::builder("Post")
            .store(store.clone())
            .personal_data_key(&key)
            .snapshotting(true)
            .build()
            .expect("open")
    };
    let app = open();
    let mut parcel = Parcel::send(Uuid::new_v4(), "1 Main Street".into());
    app.save(&mut parcel).expect("save");
    app.take_snapshot::<Parcel>(parcel.id()).expect("snapshot");
    // Another process (its keys read from the store): the snapshot, if
    // kept, would give the address as forgotten.
    assert_eq!(
        open().get::<Parcel>(parcel.id()).expect("get").address,
        "1 Main Street"
    );
}

/// A snapshot of an aggregate whose events name a subject its struct does
/// not mark would be sealed under the aggregate's id and outlive a forget
/// of the subject: refused, saying what to mark.
mod unmarked_subject {
    use super::*;

    /// A parcel whose struct forgets to mark its customer `#[subject]`.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct Parcel {
        customer: Uuid,
        #[personal]
        address: String,
    }

    #[aggregate]
    impl Parcel {
        /// Sends a parcel.
        #[event("Sent")]
        pub(crate) fn send(#[subject] customer: Uuid, #[personal] address: String) -> Self {
            Parcel { customer, address }
        }
    }

    #[test]
    fn its_snapshot_is_refused() {
        let app = Application::builder("Post")
            .personal_data_key(annals::cipher::create_key())
            .snapshotting(true)
            .build()
            .expect("the application");
        let mut parcel = Parcel::send(Uuid::new_v4(), "1 Lane".into());
        app.save(&mut parcel).expect("a save");
        let err = app
            .take_snapshot::<Parcel>(parcel.id())
            .expect_err("refused");
        assert!(
            err.to_string().contains("#[subject]") || format!("{err:?}").contains("#[subject]"),
            "{err:?}"
        );
    }
}
