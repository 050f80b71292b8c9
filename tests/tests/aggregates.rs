//! What `#[aggregate]` and `#[event]` generate, seen from the user's side.

use annals::clock::{self, FixedClock};
use annals::prelude::*;
use annals::{DomainEvent, Timestamp};
use serde::{Deserialize, Serialize};

#[aggregate]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dog {
    name: String,
    tricks: Vec<String>,
}

#[aggregate(derive(PartialEq))]
impl Dog {
    #[event("Registered")]
    fn register(name: String) -> Self {
        Dog {
            name,
            tricks: Vec::new(),
        }
    }

    #[event("TrickAdded")]
    fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    fn create_id(name: &str) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("/dogs/{name}").as_bytes())
    }
}

/// String ids, streams from version 0, a renamed topic prefix, an event
/// named after its method, a topic override, a discarding event.
#[aggregate]
#[derive(Debug)]
struct Stream {
    lines: Vec<String>,
    closed: bool,
}

#[aggregate(id = String, initial_version = 0, name = "streams.Stream")]
impl Stream {
    #[event]
    fn open() -> Stream {
        Self {
            lines: vec!["opened".to_owned()],
            closed: false,
        }
    }

    #[event(topic = "streams.LineAppended.v1")]
    fn append(&mut self, mut line: String, repeat: u8) {
        line = line.repeat(repeat.into());
        self.lines.push(line);
    }

    #[event("Closed", discard)]
    fn close(&mut self) {
        self.closed = true;
    }

    /// A command that validates first.
    fn append_checked(&mut self, line: &str) -> Result<(), String> {
        if self.closed {
            return Err("closed".into());
        }
        self.append(line.to_owned(), 1);
        Ok(())
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn a_creation_event_makes_a_new_aggregate_with_one_pending_event() {
    let _clock = clock::set_thread_clock(FixedClock(at("2026-01-02T03:04:05Z")));
    let dog = Dog::register("Fido".into());
    assert_eq!(dog.name, "Fido");
    assert_eq!(dog.version(), 1);
    assert_eq!(dog.created_on(), at("2026-01-02T03:04:05Z"));
    assert_eq!(dog.modified_on(), dog.created_on());
    let pending = dog.pending_events();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].originator_id, dog.id());
    assert_eq!(pending[0].originator_version, 1);
    assert_eq!(pending[0].timestamp, at("2026-01-02T03:04:05Z"));
    assert_eq!(
        pending[0].event,
        DogEvent::Registered {
            name: "Fido".into()
        }
    );
    assert_eq!(pending[0].topic(), "Dog.Registered");
    assert!(pending[0].event.is_creation());
}

#[test]
fn create_id_gives_deterministic_ids_and_callers_can_pass_one() {
    let a = Dog::register("Rex".into());
    let b = Dog::register("Rex".into());
    assert_eq!(a.id(), b.id());
    assert_eq!(a.id(), Dog::create_id("Rex"));
    assert_ne!(a.id(), Dog::register("Max".into()).id());

    let explicit = Uuid::new_v4();
    let c = Dog::register_with_id(explicit, "Rex".into());
    assert_eq!(c.id(), explicit);
    assert_eq!(c.pending_events()[0].originator_id, explicit);
}

#[test]
fn commands_apply_their_body_and_record_an_event() {
    let mut dog = Dog::register("Fido".into());
    let _clock = clock::set_thread_clock(FixedClock(at("2030-05-06T07:08:09Z")));
    dog.add_trick("roll over".into());
    dog.add_trick("play dead".into());
    assert_eq!(dog.tricks, ["roll over", "play dead"]);
    assert_eq!(dog.version(), 3);
    assert_eq!(dog.modified_on(), at("2030-05-06T07:08:09Z"));
    assert_ne!(dog.created_on(), dog.modified_on());
    let versions: Vec<u64> = dog
        .pending_events()
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(
        dog.pending_events()[2].event,
        DogEvent::TrickAdded {
            trick: "play dead".into()
        }
    );
}

#[test]
fn topics_are_stable_and_overridable() {
    assert_eq!(DogEvent::TOPICS, ["Dog.Registered", "Dog.TrickAdded"]);
    assert_eq!(
        StreamEvent::TOPICS,
        [
            "streams.Stream.Open",
            "streams.LineAppended.v1",
            "streams.Stream.Closed"
        ]
    );
    assert_eq!(<Dog as Aggregate>::NAME, "Dog");
    assert_eq!(<Stream as Aggregate>::NAME, "streams.Stream");
}

#[test]
fn string_ids_and_initial_version_zero() {
    let mut s = Stream::open_with_id("dog-fido");
    assert_eq!(s.id(), "dog-fido");
    assert_eq!(s.version(), 0);
    s.append("ab".into(), 2);
    assert_eq!(s.version(), 1);
    assert_eq!(s.lines, ["opened", "abab"]);
    let generated = Stream::open();
    assert!(!generated.id().is_empty());
    assert_ne!(generated.id(), Stream::open().id());
}

#[test]
fn validating_commands_record_nothing_when_rejected() {
    let mut s = Stream::open();
    s.append_checked("x").expect("open stream");
    s.close();
    assert!(s.is_discarded());
    let before = s.pending_events().len();
    assert_eq!(s.append_checked("y"), Err("closed".to_owned()));
    assert_eq!(s.pending_events().len(), before);
}

#[test]
fn the_hidden_metadata_is_skipped_by_serde_and_the_struct_stays_usable() {
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit".into());
    let json = serde_json::to_value(&dog).expect("serialize");
    assert_eq!(json, serde_json::json!({"name": "Fido", "tricks": ["sit"]}));
    let copy = dog.clone();
    assert_eq!(copy, dog);
    assert_eq!(copy.pending_events().len(), 2);
}

#[test]
fn stored_state_holds_the_fields_and_the_timestamp() {
    let _clock = clock::set_thread_clock(FixedClock(at("2026-01-02T03:04:05Z")));
    let app = Application::builder("Dogs").build().expect("app");
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("sit".into());
    app.save(&mut dog).expect("save");
    let stored = app.notifications(1, 10).expect("notifications");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].event.topic, "Dog.TrickAdded");
    assert_eq!(stored[1].event.originator_id, dog.id().simple().to_string());
    assert_eq!(stored[1].event.originator_version, 2);
    let state: serde_json::Value = serde_json::from_slice(&stored[1].event.state).expect("json");
    assert_eq!(
        state,
        serde_json::json!({"timestamp": "2026-01-02T03:04:05.000000000Z", "trick": "sit"})
    );
    // Decoding gives back the same domain event.
    let decoded: DomainEvent<Dog> = app.mapper().decode(&stored[1].event).expect("decode");
    assert_eq!(
        decoded.event,
        DogEvent::TrickAdded {
            trick: "sit".into()
        }
    );
    assert_eq!(decoded.timestamp, at("2026-01-02T03:04:05Z"));
    assert_eq!(decoded.originator_id, dog.id());
}

/// Event bodies that call other event methods, and arguments named like
/// the generated code's own variables.
#[aggregate]
#[derive(Debug, Clone)]
struct Kennel {
    owner: Uuid,
    dogs: Vec<String>,
    log: Vec<String>,
}

#[aggregate]
impl Kennel {
    #[event("Opened")]
    fn open(__id: Uuid, id: String, aggregate_id: String) -> Self {
        let mut kennel = Kennel {
            owner: __id,
            dogs: Vec::new(),
            log: vec![format!("{id}/{aggregate_id}")],
        };
        // An event method called by an event body is part of that event.
        kennel.admit("first".into());
        kennel
    }

    #[event("Admitted")]
    fn admit(&mut self, __event: String) {
        self.dogs.push(__event);
    }

    #[event("Renovated")]
    fn renovate(&mut self, __header: u8) {
        self.admit(format!("builder{__header}"));
        self.log.push("renovated".into());
    }
}

#[test]
fn event_bodies_that_call_event_methods_record_only_the_outer_event() {
    let app = Application::builder("Kennels").build().expect("app");
    let owner = Uuid::new_v4();
    let mut kennel = Kennel::open(owner, "a".into(), "b".into());
    assert_eq!(
        kennel.owner, owner,
        "an argument named __id is the caller's"
    );
    assert_eq!(kennel.log, ["a/b"]);
    assert_eq!(kennel.dogs, ["first"]);
    assert_eq!(kennel.version(), 1);
    kennel.renovate(7);
    kennel.admit("rex".into());
    let topics: Vec<&str> = kennel.pending_events().iter().map(|e| e.topic()).collect();
    assert_eq!(
        topics,
        ["Kennel.Opened", "Kennel.Renovated", "Kennel.Admitted"]
    );
    app.save(&mut kennel).expect("save");

    let copy: Kennel = app.repository().get(kennel.id()).expect("get");
    assert_eq!(copy.dogs, ["first", "builder7", "rex"]);
    assert_eq!(copy.owner, owner);
    assert_eq!(copy.version(), 3);
    assert!(copy.pending_events().is_empty(), "replay records nothing");
    // Other kennels are not affected by a stray event of the first.
    let mut other = Kennel::open(Uuid::new_v4(), "c".into(), "d".into());
    app.save(&mut other).expect("a second kennel saves");
}

/// Counts the copies the hand-written `Clone` below makes.
static TALLY_CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An aggregate whose `Clone` is written by hand (it copies the hidden
/// metadata field too).
#[aggregate]
#[derive(Debug)]
struct Tally {
    count: u32,
}

impl Clone for Tally {
    fn clone(&self) -> Self {
        TALLY_CLONES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            count: self.count,
            __annals: self.__annals.clone(),
        }
    }
}

#[aggregate]
impl Tally {
    #[event("Started")]
    fn start() -> Self {
        Tally { count: 0 }
    }

    #[event("Incremented")]
    fn increment(&mut self) {
        self.count += 1;
    }
}

#[test]
fn an_aggregate_with_a_hand_written_clone_is_cached() {
    let app = Application::builder("Tallies")
        .cache(10)
        .build()
        .expect("app");
    let mut tally = Tally::start();
    tally.increment();
    app.save(&mut tally).expect("save");
    let before = TALLY_CLONES.load(std::sync::atomic::Ordering::SeqCst);
    let copy: Tally = app.repository().get(tally.id()).expect("get");
    assert_eq!(copy.count, 1);
    assert_eq!(copy.version(), 2);
    assert!(
        TALLY_CLONES.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the copy came from the cache"
    );
}

/// An aggregate whose serde derives are behind `cfg_attr`.
#[aggregate]
#[derive(Debug)]
#[cfg_attr(all(), derive(Serialize, Deserialize))]
struct Note {
    text: String,
}

#[aggregate]
impl Note {
    #[event("Written")]
    fn write(text: String) -> Self {
        Note { text }
    }

    #[event("Amended")]
    fn amend(&mut self, text: String) {
        self.text = text;
    }
}

#[test]
fn an_aggregate_deriving_serde_through_cfg_attr_can_be_snapshotted() {
    let app = Application::builder("Notes")
        .snapshot_every::<Note>(2)
        .build()
        .expect("Note derives Serialize and Deserialize: snapshots are allowed");
    let mut note = Note::write("a".into());
    note.amend("b".into());
    app.save(&mut note).expect("save");
    let id = note.id().simple().to_string();
    let snapshots = app
        .snapshots()
        .expect("enabled")
        .recorder()
        .select_events(&id, &annals::persistence::EventQuery::all())
        .expect("snapshots");
    assert_eq!(snapshots.len(), 1, "a snapshot at version 2");
    let state: serde_json::Value = serde_json::from_slice(&snapshots[0].state).expect("json");
    assert_eq!(state["state"]["text"], "b", "{state}");
    let copy: Note = app.repository().get(note.id()).expect("get");
    assert_eq!(copy.text, "b");
    assert_eq!(copy.version(), 2);
}

/// Python's rule: a snapshot at each multiple of the interval a save
/// reaches, each of the note as it was then; the default takes one, at
/// the save's last version.
#[test]
fn each_multiple_snapshots_where_python_would_and_last_where_the_save_ends() {
    use annals::application::SnapshotRule;
    let save_in_steps = |rule: SnapshotRule| {
        let app = Application::builder("Notes")
            .snapshot_every::<Note>(2)
            .snapshot_rule(rule)
            .build()
            .expect("build");
        let mut note = Note::write("v1".into());
        note.amend("v2".into());
        note.amend("v3".into());
        app.save(&mut note).expect("versions 1 to 3");
        note.amend("v4".into());
        app.save(&mut note).expect("version 4");
        for v in 5..=9 {
            note.amend(format!("v{v}"));
        }
        app.save(&mut note).expect("versions 5 to 9");
        let snapshots = app.snapshots().expect("enabled").list::<Note>(note.id());
        snapshots
            .expect("snapshots")
            .into_iter()
            .map(|n| (n.version(), n.text))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        save_in_steps(SnapshotRule::EachMultiple),
        [
            (2, "v2".to_owned()),
            (4, "v4".to_owned()),
            (6, "v6".to_owned()),
            (8, "v8".to_owned())
        ]
    );
    assert_eq!(
        save_in_steps(SnapshotRule::Last),
        [
            (3, "v3".to_owned()),
            (4, "v4".to_owned()),
            (9, "v9".to_owned())
        ]
    );
}

/// `#[serde(..)]` on event arguments shapes the stored events.
#[aggregate]
#[derive(Debug)]
struct Performer {
    tricks: Vec<String>,
    rating: u8,
}

/// Stores a `u8` as a string.
mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &u8, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[aggregate]
impl Performer {
    #[event("Debuted")]
    fn debut(#[serde(rename = "trick_name")] trick: String) -> Self {
        Performer {
            tricks: vec![trick],
            rating: 0,
        }
    }

    #[event("Rated")]
    fn rate(&mut self, #[serde(with = "as_string", rename = "stars")] rating: u8) {
        self.rating = rating;
    }
}

#[test]
fn serde_attributes_on_event_arguments_shape_the_stored_state() {
    let _clock = clock::set_thread_clock(FixedClock(at("2026-01-02T03:04:05Z")));
    let app = Application::builder("Performers").build().expect("app");
    let mut performer = Performer::debut("juggle".into());
    performer.rate(5);
    app.save(&mut performer).expect("save");
    let stored = app
        .recorder()
        .select_events(
            &performer.id().simple().to_string(),
            &annals::persistence::EventQuery::all(),
        )
        .expect("select");
    let states: Vec<serde_json::Value> = stored
        .iter()
        .map(|e| serde_json::from_slice(&e.state).expect("json"))
        .collect();
    assert_eq!(
        states,
        [
            serde_json::json!({"timestamp": "2026-01-02T03:04:05.000000000Z", "trick_name": "juggle"}),
            serde_json::json!({"timestamp": "2026-01-02T03:04:05.000000000Z", "stars": "5"}),
        ]
    );
    let copy: Performer = app.repository().get(performer.id()).expect("get");
    assert_eq!(copy.tricks, ["juggle"]);
    assert_eq!(copy.rating, 5);
}

/// Event bodies that read their event's timestamp, and one that creates an
/// aggregate of another type.
#[aggregate]
#[derive(Debug)]
struct Diary {
    opened: Timestamp,
    modified: Timestamp,
    entries: Vec<String>,
    pet: Option<Dog>,
}

#[aggregate]
impl Diary {
    #[event("Opened")]
    fn open() -> Self {
        let now = annals::current_event_timestamp();
        Diary {
            opened: now,
            modified: now,
            entries: Vec::new(),
            pet: None,
        }
    }

    #[event("Written")]
    fn write(&mut self, entry: String) {
        self.modified = annals::current_event_timestamp();
        self.entries.push(entry);
        // Part of this event: the same timestamp, nothing recorded.
        self.stamp();
    }

    #[event("Stamped")]
    fn stamp(&mut self) {
        assert_eq!(annals::current_event_timestamp(), self.modified);
    }

    #[event("PetAdopted")]
    fn adopt(&mut self, name: String) {
        // Another aggregate type, created inside a body: it records its
        // own event as usual.
        self.pet = Some(Dog::register(name));
    }
}

#[test]
fn event_bodies_read_their_event_timestamp_on_trigger_and_on_replay() {
    let app = Application::builder("Diaries").build().expect("app");
    let mut diary = {
        let _clock = clock::set_thread_clock(FixedClock(at("2026-01-01T00:00:00Z")));
        Diary::open()
    };
    {
        let _clock = clock::set_thread_clock(FixedClock(at("2026-02-02T00:00:00Z")));
        diary.write("hello".into());
    }
    assert_eq!(diary.opened, at("2026-01-01T00:00:00Z"));
    assert_eq!(diary.modified, at("2026-02-02T00:00:00Z"));
    let recorded: Vec<Timestamp> = diary.pending_events().iter().map(|e| e.timestamp).collect();
    assert_eq!(recorded, [diary.opened, diary.modified]);
    app.save(&mut diary).expect("save");

    // Replayed at another time: the stored timestamps, not the clock's.
    let _clock = clock::set_thread_clock(FixedClock(at("2030-03-03T00:00:00Z")));
    let copy: Diary = app.repository().get(diary.id()).expect("get");
    assert_eq!(copy.opened, diary.opened);
    assert_eq!(copy.modified, diary.modified);
    assert_eq!(copy.entries, ["hello"]);
}

#[test]
#[should_panic(expected = "outside an event body")]
fn the_event_timestamp_outside_an_event_body_is_a_clear_panic() {
    let _ = annals::current_event_timestamp();
}

#[test]
fn an_aggregate_created_inside_another_types_event_body_records_its_events() {
    let mut diary = Diary::open();
    diary.adopt("Rex".into());
    let topics: Vec<&str> = diary.pending_events().iter().map(|e| e.topic()).collect();
    assert_eq!(topics, ["Diary.Opened", "Diary.PetAdopted"]);
    let pet = diary.pet.as_ref().expect("adopted");
    assert_eq!(pet.id(), Dog::create_id("Rex"), "the pet has its id");
    assert_eq!(pet.version(), 1);
    assert_eq!(pet.pending_events().len(), 1, "and its creation event");
    assert_eq!(pet.pending_events()[0].topic(), "Dog.Registered");
}
