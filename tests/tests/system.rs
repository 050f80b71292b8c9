//! The system layer in one process: graph checks, the log reader and
//! subscriptions, process applications with each in-process runner, and
//! bringing followers up to date on demand.

use std::sync::Arc;
use std::time::Duration;

use annals::log::{NotificationLogReader, Stopper, Subscription};
use annals::persistence::NotificationQuery;
use annals::prelude::*;
use annals::system::{
    MultiThreadedRunner, Processing, Projection, SingleThreadedRunner, SyncOptions, System,
    Upstream,
};
use annals::Persistence;
use annals_examples::shop::{Order, OrderEvent, Shop};
use annals_tests::stores::every_store_for;
use serde::{Deserialize, Serialize};

/// The names of the shop's applications under `prefix`.
fn apps(prefix: &str) -> [String; 3] {
    ["Orders", "Reservations", "Payments"].map(|role| format!("{prefix}_{role}"))
}

/// The shop on `persistence`, its applications named `{prefix}_{role}`
/// (SQLite: one file, a table prefix per application).
fn shop_on(persistence: &Persistence, prefix: &str) -> Shop {
    Shop::new(|role| {
        let name = format!("{prefix}_{role}");
        let persistence = match persistence {
            Persistence::Sqlite(config) => {
                let mut config = config.clone();
                config.table_prefix = Some(name.clone());
                Persistence::Sqlite(config)
            }
            other => other.clone(),
        };
        Application::builder(&name).persistence(persistence).build()
    })
    .expect("shop")
}

#[test]
fn the_single_threaded_runner_settles_every_order_exactly_once() {
    for (store, persistence) in every_store_for(&apps("sys_single").each_ref().map(String::as_str))
    {
        let shop = shop_on(&persistence, "sys_single");
        let runner = SingleThreadedRunner::new(shop.system.clone());
        let mut orders = vec![shop.place_order(&["book"]).expect(store)];
        orders.push(shop.place_order(&["pen", "ink"]).expect(store));
        assert!(runner.run().expect(store) > 0);
        shop.check_settled(&orders).expect(store);
        assert_eq!(
            runner.run().expect(store),
            0,
            "{store}: nothing left, nothing repeated"
        );
        orders.push(shop.place_order(&["lamp"]).expect(store));
        runner.run().expect(store);
        shop.check_settled(&orders).expect(store);
    }
}

#[test]
fn the_multi_threaded_runner_settles_orders_and_stops_and_restarts_cleanly() {
    for (store, persistence) in every_store_for(&apps("sys_threads").each_ref().map(String::as_str))
    {
        let shop = shop_on(&persistence, "sys_threads");
        let runner = MultiThreadedRunner::start(shop.system.clone()).expect(store);
        let mut orders = Vec::new();
        for i in 0..20 {
            orders.push(shop.place_order(&["item"; 3][..(i % 3 + 1)]).expect(store));
        }
        assert!(
            runner
                .wait_until_caught_up(Duration::from_secs(60))
                .expect(store),
            "{store}: caught up"
        );
        shop.check_settled(&orders).expect(store);
        runner.stop().expect(store);

        // Orders placed while no runner runs are a backlog the next one
        // processes first.
        for _ in 0..5 {
            orders.push(shop.place_order(&["late"]).expect(store));
        }
        assert!(shop.check_settled(&orders).is_err(), "{store}: not yet");
        let runner = MultiThreadedRunner::start(shop.system.clone()).expect(store);
        assert!(runner
            .wait_until_caught_up(Duration::from_secs(60))
            .expect(store));
        runner.stop().expect(store);
        shop.check_settled(&orders).expect(store);

        // The single-threaded runner on the same stores finds nothing to do.
        assert_eq!(
            SingleThreadedRunner::new(shop.system.clone())
                .run()
                .expect(store),
            0
        );
    }
}

fn memory_app(name: &str) -> Arc<Application> {
    Arc::new(Application::builder(name).build().expect("app"))
}

fn noop(_: &Upstream<'_>, _: &mut Processing<'_>) -> annals::Result<()> {
    Ok(())
}

#[test]
fn the_graph_is_checked() {
    let build = |f: fn(annals::system::SystemBuilder) -> annals::system::SystemBuilder| {
        f(System::builder())
            .build()
            .map(drop)
            .expect_err("a bad graph")
            .to_string()
    };
    let message = build(|b| b.application(memory_app("A")).application(memory_app("A")));
    assert!(message.contains("\"A\" is used by two"), "{message}");
    let message = build(|b| {
        b.application(memory_app("A"))
            .application(memory_app("B"))
            .pipe(["A", "B"])
    });
    assert!(message.contains("not a process application"), "{message}");
    let message = build(|b| b.process(memory_app("A"), noop).pipe(["A", "A"]));
    assert!(message.contains("follows itself"), "{message}");
    let message = build(|b| b.application(memory_app("A")).pipe(["A", "Z"]));
    assert!(
        message.contains("\"Z\", which is not an application"),
        "{message}"
    );
    let message = build(|b| {
        b.application(memory_app("A"))
            .process(memory_app("B"), noop)
    });
    assert!(message.contains("follows nothing"), "{message}");
    // A cycle of process applications is fine (the shop is one).
    System::builder()
        .process(memory_app("A"), noop)
        .process(memory_app("B"), noop)
        .pipe(["A", "B", "A"])
        .build()
        .expect("a cycle of followers runs");
}

/// What a follower saw: (leader, notification id, topic), in order.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seen {
    entries: Vec<(String, u64, String)>,
}

#[aggregate]
impl Seen {
    #[event("Started")]
    fn start() -> Self {
        Seen {
            entries: Vec::new(),
        }
    }

    #[event("Noted")]
    fn note(&mut self, leader: String, id: u64, topic: String) {
        self.entries.push((leader, id, topic));
    }

    fn create_id() -> Uuid {
        Uuid::nil()
    }
}

/// Notes every upstream event in one `Seen` aggregate.
fn note(event: &Upstream<'_>, processing: &mut Processing<'_>) -> annals::Result<()> {
    let app = processing.app();
    let mut seen: Seen = match app.repository().get(Uuid::nil()) {
        Ok(seen) => seen,
        Err(e) if e.is_not_found() => Seen::start(),
        Err(e) => return Err(e),
    };
    seen.note(
        event.leader().to_owned(),
        event.notification().id,
        event.topic().to_owned(),
    );
    processing.save(&mut seen)
}

#[test]
fn several_followers_of_one_leader_and_one_follower_of_two_leaders_in_order() {
    let shop = Shop::new(|role| Application::builder(role).build()).expect("shop");
    let audit = memory_app("Audit");
    let system = Arc::new(
        System::builder()
            .process(shop.orders.clone(), annals_examples::shop::mark_paid())
            .process(shop.reservations.clone(), annals_examples::shop::reserve())
            .process(shop.payments.clone(), annals_examples::shop::pay())
            .process(audit.clone(), note)
            .pipe(["Orders", "Reservations", "Payments", "Orders"])
            .pipe(["Orders", "Audit"])
            .pipe(["Payments", "Audit"])
            .build()
            .expect("system"),
    );
    assert_eq!(system.leaders("Audit"), ["Orders", "Payments"]);
    let orders: Vec<Uuid> = (0..4)
        .map(|_| shop.place_order(&["a", "b"]).expect("order"))
        .collect();
    let runner = MultiThreadedRunner::start(system.clone()).expect("start");
    assert!(runner
        .wait_until_caught_up(Duration::from_secs(30))
        .expect("run"));
    runner.stop().expect("stop");
    shop.check_settled(&orders).expect("settled");

    let seen: Seen = audit.repository().get(Uuid::nil()).expect("seen");
    let from = |leader: &str| -> Vec<u64> {
        seen.entries
            .iter()
            .filter(|(l, ..)| l == leader)
            .map(|(_, id, _)| *id)
            .collect()
    };
    // Every notification of each leader, once, in order.
    assert_eq!(from("Orders"), (1..=8).collect::<Vec<_>>());
    assert_eq!(from("Payments"), (1..=4).collect::<Vec<_>>());
    let placed = seen
        .entries
        .iter()
        .filter(|(_, _, t)| t == "Order.Placed")
        .count();
    assert_eq!(placed, 4);
    // Causation: the reservation of the first order was caused by its
    // Placed event, and shares its correlation.
    let log = shop
        .reservations
        .recorder()
        .select_notifications(&NotificationQuery::new(1, 10))
        .expect("log");
    let made: annals::DomainEvent<annals_examples::shop::Reservation> = shop
        .reservations
        .mapper()
        .decode(&log[0].event)
        .expect("decode");
    let placed_log = shop
        .orders
        .recorder()
        .select_notifications(&NotificationQuery::new(1, 1))
        .expect("log");
    let placed: annals::DomainEvent<Order> = shop
        .orders
        .mapper()
        .decode(&placed_log[0].event)
        .expect("decode");
    assert_eq!(made.causation_id, Some(placed.event_id()));
    assert_eq!(made.correlation_id, Some(placed.event_id()));
    // A policy that saves without decoding its upstream event (the audit)
    // gives the same causation: read from the stored state.
    let audit_log = audit
        .recorder()
        .select_notifications(&NotificationQuery::new(1, 1))
        .expect("log");
    let noted: annals::DomainEvent<Seen> =
        audit.mapper().decode(&audit_log[0].event).expect("decode");
    assert_eq!(noted.causation_id, Some(placed.event_id()));
    assert_eq!(noted.correlation_id, Some(placed.event_id()));
}

#[test]
fn a_failing_policy_stops_its_follower_and_the_error_reaches_the_caller() {
    let leader = memory_app("Leader");
    let follower = memory_app("Follower");
    let system = Arc::new(
        System::builder()
            .application(leader.clone())
            .process(
                follower.clone(),
                |event: &Upstream<'_>, _: &mut Processing<'_>| {
                    if event.notification().id == 2 {
                        Err(annals::Error::config("policy", "refusing notification 2"))
                    } else {
                        Ok(())
                    }
                },
            )
            .pipe(["Leader", "Follower"])
            .build()
            .expect("system"),
    );
    let runner = MultiThreadedRunner::start(system.clone()).expect("start");
    for _ in 0..3 {
        leader
            .save(&mut Seen::start_with_id(Uuid::new_v4()))
            .expect("save");
    }
    let err = runner
        .wait_until_caught_up(Duration::from_secs(30))
        .expect_err("the policy fails");
    assert!(err.to_string().contains("refusing notification 2"), "{err}");
    runner
        .stop()
        .expect("the error was taken by the caller already");
    // Exactly the notification before the failing one is tracked.
    assert_eq!(
        follower.recorder().max_tracking_id("Leader").expect("max"),
        1
    );
    assert!(
        SingleThreadedRunner::new(system).run().is_err(),
        "still failing on 2"
    );
}

#[test]
fn the_log_reader_pages_through_a_log_with_bounded_selects() {
    let app = Application::builder("Log").build().expect("app");
    for _ in 0..25 {
        let mut seen = Seen::start_with_id(Uuid::new_v4());
        seen.note("x".into(), 1, "t".into());
        app.save(&mut seen).expect("save");
    }
    let reader = NotificationLogReader::new(&app).page_size(7);
    let ids: Vec<u64> = reader.read(1).map(|n| n.expect("read").id).collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    assert_eq!(reader.page(45).expect("page").len(), 6);
    let noted: Vec<u64> = NotificationLogReader::new(&app)
        .page_size(4)
        .topics(["Seen.Noted"])
        .read(10)
        .map(|n| n.expect("read").id)
        .collect();
    assert_eq!(
        noted,
        (10..=50).filter(|id| id % 2 == 0).collect::<Vec<_>>()
    );
}

#[test]
fn a_subscription_reads_the_backlog_then_waits_for_new_events_until_stopped() {
    for (store, persistence) in every_store_for(&["sys_subscription"]) {
        let app = Arc::new(
            Application::builder("sys_subscription")
                .persistence(persistence)
                .build()
                .expect(store),
        );
        for _ in 0..3 {
            app.save(&mut Seen::start_with_id(Uuid::new_v4()))
                .expect(store);
        }
        let subscription = Subscription::new(&app, 2, &[])
            .expect(store)
            .poll_interval(Duration::from_millis(50));
        let stopper = subscription.stopper();
        let writer = {
            let app = app.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                app.save(&mut Seen::start_with_id(Uuid::new_v4()))
                    .expect("save");
            })
        };
        let mut ids = Vec::new();
        for n in subscription {
            ids.push(n.expect(store).id);
            if ids.len() == 3 {
                stopper.stop();
            }
        }
        writer.join().expect("writer");
        assert_eq!(ids, [2, 3, 4], "{store}");
    }
}

#[test]
fn sync_followers_brings_followers_up_to_date_with_dry_runs_and_per_follower_errors() {
    let shop = Shop::new(|role| Application::builder(role).build()).expect("shop");
    let broken = memory_app("Broken");
    let system = System::builder()
        .process(shop.orders.clone(), annals_examples::shop::mark_paid())
        .process(shop.reservations.clone(), annals_examples::shop::reserve())
        .process(shop.payments.clone(), annals_examples::shop::pay())
        .process(
            broken.clone(),
            |_: &Upstream<'_>, _: &mut Processing<'_>| {
                Err(annals::Error::config("policy", "always fails"))
            },
        )
        .pipe(["Orders", "Reservations", "Payments", "Orders"])
        .pipe(["Orders", "Broken"])
        .build()
        .expect("system");
    let orders: Vec<Uuid> = (0..3)
        .map(|_| shop.place_order(&["x"]).expect("order"))
        .collect();

    let mut out = Vec::new();
    let dry = SyncOptions {
        followers: vec!["Reservations".into()],
        dry_run: true,
        verbosity: 2,
    };
    let report = system.sync_followers(&dry, &mut out).expect("dry run");
    assert_eq!(
        (
            report.followers.len(),
            report.followers[0].processed,
            report.followers[0].events
        ),
        (1, 3, 3)
    );
    assert_eq!(
        shop.reservations
            .recorder()
            .max_notification_id()
            .expect("max"),
        0,
        "a dry run stores nothing"
    );
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.contains("Reservations: Orders #1 Order.Placed -> 1 events"),
        "{text}"
    );
    assert!(text.contains("would process 3"), "{text}");

    let mut out = Vec::new();
    let report = system
        .sync_followers(&SyncOptions::default(), &mut out)
        .expect("sync");
    assert!(!report.is_ok());
    let broken_report = report
        .followers
        .iter()
        .find(|f| f.name == "Broken")
        .expect("reported");
    assert!(broken_report
        .error
        .as_ref()
        .is_some_and(|e| e.to_string().contains("always fails")));
    // The others ran; followers of followers need another pass, which a
    // second call makes.
    system
        .sync_followers(&SyncOptions::default(), &mut Vec::new())
        .expect("sync");
    system
        .sync_followers(&SyncOptions::default(), &mut Vec::new())
        .expect("sync");
    shop.check_settled(&orders).expect("settled");
    let err = system
        .sync_followers(
            &SyncOptions {
                followers: vec!["Nobody".into()],
                ..SyncOptions::default()
            },
            &mut Vec::new(),
        )
        .expect_err("unknown follower");
    assert!(err.to_string().contains("Nobody"), "{err}");
}

/// A projection: how many items were ordered, per order, in a SQL table.
fn count_items(event: &Upstream<'_>, tx: &mut rusqlite::Transaction<'_>) -> annals::Result<()> {
    if let Some(placed) = event.decode::<Order>()? {
        if let OrderEvent::Placed { items } = placed.event {
            tx.execute(
                "INSERT INTO items_ordered (order_id, items) VALUES (?1, ?2)",
                rusqlite::params![placed.originator_id.to_string(), items.len() as i64],
            )
            .map_err(|e| annals::Error::persistence("projecting", e))?;
        }
    }
    Ok(())
}

fn items_total(projection: &Projection<rusqlite::Connection>) -> (i64, i64) {
    projection.with_db(|db| {
        db.query_row(
            "SELECT COUNT(*), COALESCE(SUM(items), 0) FROM items_ordered",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query")
    })
}

#[test]
fn a_projection_keeps_a_sql_read_model_exactly_once_and_lets_callers_read_their_writes() {
    let orders = memory_app("Orders");
    let path = annals_tests::stores::temp_sqlite("projection");
    let open = || {
        let db = rusqlite::Connection::open(&path).expect("open");
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS items_ordered (order_id TEXT PRIMARY KEY, items INTEGER)",
        )
        .expect("table");
        Projection::new("items", orders.clone(), db, count_items).expect("projection")
    };
    let projection = Arc::new(open());
    let stop = Stopper::new();
    let worker = {
        let (projection, stop) = (projection.clone(), stop.clone());
        std::thread::spawn(move || projection.run(&stop, Duration::from_millis(50)))
    };
    let mut last = 0;
    for n in 1..=5 {
        let mut order = Order::place(vec!["x".into(); n]);
        last = *orders
            .save(&mut order)
            .expect("save")
            .last()
            .expect("an id");
    }
    assert!(
        projection.wait(last, Duration::from_secs(30)),
        "read your writes"
    );
    assert_eq!(items_total(&projection), (5, 15));
    stop.stop();
    worker.join().expect("join").expect("run");

    // A restarted projection on the same database applies nothing twice.
    let again = open();
    assert_eq!(again.pull().expect("pull"), 0);
    let mut order = Order::place(vec!["y".into()]);
    orders.save(&mut order).expect("save");
    assert_eq!(again.pull().expect("pull"), 1);
    assert_eq!(items_total(&again), (6, 16));
    assert!(again.wait(6, Duration::ZERO));
}

#[test]
fn a_projection_into_postgres() {
    let Some(config) = annals_tests::stores::postgres_server() else {
        annals_tests::skipped("a_projection_into_postgres");
        return;
    };
    let mut client = annals_tests::stores::postgres_client(&config);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS paid_orders; CREATE TABLE paid_orders (order_id uuid PRIMARY KEY); \
             DELETE FROM projection_tracking WHERE projection = 'paid' ",
        )
        .or_else(|_| client.batch_execute("DROP TABLE IF EXISTS paid_orders; CREATE TABLE paid_orders (order_id uuid PRIMARY KEY)"))
        .expect("tables");
    let orders = memory_app("Orders");
    let projection = Projection::new(
        "paid",
        orders.clone(),
        client,
        |event: &Upstream<'_>, tx: &mut postgres::Transaction<'_>| {
            if let Some(paid) = event.decode::<Order>()? {
                if let OrderEvent::Paid {} = paid.event {
                    tx.execute(
                        "INSERT INTO paid_orders VALUES ($1)",
                        &[&paid.originator_id],
                    )
                    .map_err(|e| annals::Error::persistence("projecting", e))?;
                }
            }
            Ok(())
        },
    )
    .expect("projection");
    let mut order = Order::place(vec!["x".into()]);
    order.mark_paid();
    orders.save(&mut order).expect("save");
    assert_eq!(projection.pull().expect("pull"), 2);
    assert_eq!(projection.pull().expect("pull"), 0);
    let count: i64 = projection.with_db(|db| {
        db.query_one("SELECT COUNT(*) FROM paid_orders", &[])
            .expect("count")
            .get(0)
    });
    assert_eq!(count, 1);
}

#[test]
fn a_panicking_policy_is_a_follower_error_and_stop_joins_every_worker() {
    let leader = memory_app("Leader");
    let calm = memory_app("Calm");
    let wild = memory_app("Wild");
    let system = Arc::new(
        System::builder()
            .application(leader.clone())
            .process(calm.clone(), note)
            .process(
                wild.clone(),
                |_: &Upstream<'_>, _: &mut Processing<'_>| -> annals::Result<()> { panic!("boom") },
            )
            .pipe(["Leader", "Calm"])
            .pipe(["Leader", "Wild"])
            .build()
            .expect("system"),
    );
    let runner = MultiThreadedRunner::start(system).expect("start");
    let mut seen = Seen::start();
    seen.note("x".into(), 0, "x".into());
    leader.save(&mut seen).expect("save");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        if let Err(e) = runner.check() {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the panic was reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    match &err {
        annals::Error::Follower { follower, message } => {
            assert_eq!(follower, "Wild");
            assert!(message.contains("panicked: boom"), "{message}");
        }
        other => panic!("expected a follower error, got {other}"),
    }
    while calm.recorder().max_tracking_id("Leader").expect("calm") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calm follower went on"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    runner.stop().expect("the calm follower stopped cleanly");
    // The calm follower processed both of the leader's events.
    assert_eq!(calm.recorder().max_tracking_id("Leader").expect("calm"), 2);
}

#[test]
fn a_running_projection_retries_store_failures_and_stops_on_its_own_errors() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let orders = memory_app("Orders");
    let db = annals::rusqlite::Connection::open_in_memory().expect("db");
    let failures = Arc::new(AtomicUsize::new(0));
    let failing = failures.clone();
    let projection = Arc::new(
        Projection::new(
            "flaky",
            orders.clone(),
            db,
            move |event: &Upstream<'_>, _: &mut annals::rusqlite::Transaction<'_>| {
                if event.topic() == "Order.Paid" {
                    return Err(annals::Error::user(std::fmt::Error));
                }
                // The read model's store fails twice, then works.
                if failing.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(annals::Error::persistence(
                        "projecting",
                        "database is locked",
                    ));
                }
                Ok(())
            },
        )
        .expect("projection"),
    );
    let stop = Stopper::new();
    let runner = {
        let (projection, stop) = (projection.clone(), stop.clone());
        std::thread::spawn(move || projection.run(&stop, Duration::from_millis(20)))
    };
    let mut order = Order::place(vec!["x".into()]);
    orders.save(&mut order).expect("save");
    assert!(
        projection.wait(1, Duration::from_secs(10)),
        "applied after two failures"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 3);
    order.mark_paid();
    orders.save(&mut order).expect("save");
    let err = runner
        .join()
        .expect("thread")
        .expect_err("its own error stops it");
    assert!(err.user_error::<std::fmt::Error>().is_some(), "{err}");
    stop.stop();
}

#[test]
fn a_projections_own_conflict_error_stops_it_with_that_error() {
    let orders = memory_app("Orders");
    let mut order = Order::place(vec!["x".into()]);
    orders.save(&mut order).expect("save");
    let db = rusqlite::Connection::open_in_memory().expect("open");
    let projection = Projection::new(
        "conflicted",
        orders.clone(),
        db,
        |_: &Upstream<'_>, _: &mut rusqlite::Transaction<'_>| {
            Err(annals::Error::conflict("the user's own conflict"))
        },
    )
    .expect("projection");
    let err = projection.pull().expect_err("the user's conflict stops it");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("the user's own conflict"), "{err}");
    // Nothing was recorded as applied.
    let applied: i64 = projection.with_db(|db| {
        db.query_row("SELECT count(*) FROM projection_tracking", [], |row| {
            row.get(0)
        })
        .expect("count")
    });
    assert_eq!(applied, 0);
}

mod projections_in_a_system {
    use std::sync::Arc;
    use std::time::Duration;

    use annals::prelude::*;
    use annals::rusqlite::{self, Transaction};
    use annals::system::{
        MultiThreadedRunner, Projection, SingleThreadedRunner, SyncOptions, System, Upstream,
    };

    #[aggregate]
    #[derive(Debug)]
    pub(crate) struct Note {
        pub text: String,
    }

    #[aggregate]
    impl Note {
        #[event("Written")]
        pub fn write(text: String) -> Self {
            Note { text }
        }
    }

    fn texts(notes: &Arc<Application>) -> Arc<Projection<rusqlite::Connection>> {
        let db = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        db.execute_batch("CREATE TABLE texts (text TEXT)")
            .expect("the texts table");
        let project = |up: &Upstream<'_>, tx: &mut Transaction<'_>| {
            if let Some(written) = up.decode::<Note>()? {
                let NoteEvent::Written { text } = written.event;
                tx.execute("INSERT INTO texts VALUES (?1)", [text])
                    .map_err(annals::Error::user)?;
            }
            Ok(())
        };
        Arc::new(Projection::new("texts", notes.clone(), db, project).expect("the projection"))
    }

    fn count(projection: &Projection<rusqlite::Connection>) -> i64 {
        projection.with_db(|db| {
            db.query_row("SELECT COUNT(*) FROM texts", [], |r| r.get(0))
                .expect("the count of texts")
        })
    }

    #[test]
    fn runners_and_sync_followers_run_projections_once() {
        let notes = Arc::new(Application::builder("Notes").build().unwrap());
        let projection = texts(&notes);
        let system = Arc::new(
            System::builder()
                .application(notes.clone())
                .projection(projection.clone())
                .build()
                .unwrap(),
        );
        assert_eq!(system.followers(), ["texts"]);
        assert_eq!(system.leaders("texts"), ["Notes"]);
        for i in 0..3 {
            let mut note = Note::write(format!("note {i}"));
            notes.save(&mut note).unwrap();
            assert_eq!(
                notes.get::<Note>(note.id()).unwrap().text,
                format!("note {i}")
            );
        }
        assert!(!system.is_caught_up("texts").unwrap());
        let options = SyncOptions {
            followers: Vec::new(),
            dry_run: true,
            verbosity: 0,
        };
        let report = system.sync_followers(&options, &mut Vec::new()).unwrap();
        assert_eq!(report.followers[0].processed, 3, "a dry run counts");
        assert_eq!(count(&projection), 0, "and applies nothing");

        assert_eq!(SingleThreadedRunner::new(system.clone()).run().unwrap(), 3);
        assert!(system.is_caught_up("texts").unwrap());
        assert_eq!(count(&projection), 3);

        let runner = MultiThreadedRunner::start(system.clone()).unwrap();
        notes.save(&mut Note::write("note 3".into())).unwrap();
        assert!(runner
            .wait_until_caught_up(Duration::from_secs(30))
            .unwrap());
        runner.stop().unwrap();
        assert_eq!(count(&projection), 4, "each note applied once");
        assert_eq!(SingleThreadedRunner::new(system).run().unwrap(), 0);
    }

    #[test]
    fn a_projection_of_an_application_outside_the_system_is_an_error() {
        let notes = Arc::new(Application::builder("Notes").build().unwrap());
        let other = Arc::new(Application::builder("Other").build().unwrap());
        let err = System::builder()
            .application(other)
            .projection(texts(&notes))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("Notes"), "{err}");
        let clash = Arc::new(Application::builder("texts").build().unwrap());
        let err = System::builder()
            .application(notes.clone())
            .application(clash)
            .projection(texts(&notes))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
    }
}

/// The shop's orders and payments, as one type: what a projection over
/// both matches on.
#[derive(Debug, annals::AnyEvent)]
enum ShopEvent {
    Order(annals::DomainEvent<Order>),
    Payment(annals::DomainEvent<annals_examples::shop::Payment>),
}

/// A projection over two aggregate types with one match (hash-chained,
/// so each event is checked against its stream as `decode` checks it): a
/// new event of either type is a compile error until it is handled. A
/// third type is an unknown topic naming the view.
#[test]
fn a_projection_over_two_aggregate_types_matches_one_typed_view() {
    use annals_examples::shop::{Payment, PaymentEvent, Reservation};
    let shop = Arc::new(
        Application::builder("OneShop")
            .hash_chain(true)
            .build()
            .expect("app"),
    );
    let db = rusqlite::Connection::open_in_memory().expect("db");
    db.execute_batch(
        "CREATE TABLE orders (order_id TEXT PRIMARY KEY, items INTEGER, paid INTEGER)",
    )
    .expect("table");
    let projection = Projection::new(
        "orders",
        shop.clone(),
        db,
        |upstream: &Upstream<'_>, tx: &mut rusqlite::Transaction<'_>| {
            let done = match upstream.decode_any::<ShopEvent>()? {
                ShopEvent::Order(placed) => match placed.event {
                    OrderEvent::Placed { items } => tx.execute(
                        "INSERT INTO orders VALUES (?1, ?2, 0)",
                        rusqlite::params![placed.originator_id.to_string(), items.len() as i64],
                    ),
                    OrderEvent::Paid {} => Ok(0),
                },
                ShopEvent::Payment(taken) => match taken.event {
                    PaymentEvent::Taken { order_id, amount } => tx.execute(
                        "UPDATE orders SET paid = ?2 WHERE order_id = ?1",
                        rusqlite::params![order_id.to_string(), amount as i64],
                    ),
                },
            };
            done.map(drop)
                .map_err(|e| annals::Error::persistence("projecting", e))
        },
    )
    .expect("projection");
    let mut order = Order::place(vec!["tea".into(), "cake".into()]);
    shop.save(&mut order).expect("save");
    let mut payment = Payment::take(order.id(), 500);
    shop.save(&mut payment).expect("save");
    assert_eq!(projection.pull().expect("pull"), 2);
    let row: (i64, i64) = projection.with_db(|db| {
        db.query_row("SELECT items, paid FROM orders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("row")
    });
    assert_eq!(row, (2, 500));

    // A type the view does not name stops the projection, saying so.
    shop.save(&mut Reservation::make(order.id(), 2))
        .expect("save");
    let error = projection
        .pull()
        .expect_err("a Reservation is not a ShopEvent");
    assert!(
        matches!(&error, annals::Error::UnknownTopic { topic, aggregate: "ShopEvent", .. } if topic == "Reservation.Made"),
        "{error:?}"
    );
}
