//! The system layer across processes: followers of the shop run in child
//! processes (the `shop_follower` binary), are killed (SIGKILL) at any
//! point and restarted, and still process every upstream event exactly
//! once.
//!
//! Every follower here is started after its leader already has a backlog
//! (the crashed follower's orders are all placed before it starts; the
//! restarted followers find what was stored while they were down), so
//! these tests also cover followers catching up first, then following.
//!
//! Nothing here asserts on timings: deadlines are generous and only keep a
//! broken follower from hanging the test.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use annals::log::NotificationLogReader;
use annals::persistence::mysql::MysqlConfig;
use annals::persistence::postgres::PostgresConfig;
use annals::persistence::sqlite::SqliteConfig;
use annals::persistence::TrackingLayout;
use annals::prelude::*;
use annals::system::SingleThreadedRunner;
use annals::Persistence;
use annals_examples::shop::{stored_events, Shop};
use annals_tests::shops::{app_names, shop_on, tracked_ids};
use annals_tests::stores::{
    drop_mysql_tables, drop_postgres_tables, mysql_server, postgres_server, temp_sqlite,
};

/// Long enough for any follower on a busy machine; reaching it fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A follower in a child process, killed and reaped when dropped (so a
/// failing test leaves no process behind).
struct Follower {
    name: String,
    child: Child,
}

impl Follower {
    /// Starts `shop_follower STORE NAME`, its policies sleeping `delay_ms`
    /// per notification when given.
    fn start(store: &str, name: &str, delay_ms: Option<u64>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop_follower"));
        command.arg(store).arg(name);
        match delay_ms {
            Some(ms) => command.env("SHOP_FOLLOWER_DELAY_MS", ms.to_string()),
            None => command.env_remove("SHOP_FOLLOWER_DELAY_MS"),
        };
        let child = command.spawn().expect("start shop_follower");
        Self {
            name: name.to_owned(),
            child,
        }
    }

    /// Fails the test if the follower exited by itself (it runs until
    /// killed; its error is on stderr).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("the follower's status") {
            panic!("follower {} exited by itself: {status}", self.name);
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` until it is true, checking the followers are still
/// running; panics with `what` and the last `state` at the deadline.
fn wait_until(
    what: &str,
    followers: &mut [Follower],
    mut done: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if done() {
            return;
        }
        for follower in followers.iter_mut() {
            follower.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "deadline ({DEADLINE:?}) passed waiting until {what}; {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What order `i` is for.
fn items(i: usize) -> &'static [&'static str] {
    const ITEMS: [&[&str]; 3] = [&["book"], &["pen", "ink"], &["lamp", "bulb", "shade"]];
    ITEMS[i % ITEMS.len()]
}

fn place_orders(shop: &Shop, range: std::ops::Range<usize>) -> Vec<Uuid> {
    range
        .map(|i| shop.place_order(items(i)).expect("place an order"))
        .collect()
}

/// Whether the shop is settled (every follower caught up, every order
/// reserved, paid and marked paid once), and what is wrong if not.
fn settled(shop: &Shop, orders: &[Uuid]) -> Result<(), String> {
    for name in shop.system.followers() {
        if !shop.system.is_caught_up(name).map_err(|e| e.to_string())? {
            return Err(format!("{name} is not caught up"));
        }
    }
    shop.check_settled(orders)
}

/// The layout the tracking tables of `persistence` are created in.
fn layout(persistence: &Persistence) -> TrackingLayout {
    match persistence {
        Persistence::Sqlite(config) => config.tracking_layout,
        Persistence::Postgres(config) => config.tracking_layout,
        Persistence::Mysql(config) => config.tracking_layout,
        other => panic!("{other:?}: not a shared store"),
    }
}

/// The notification ids of `leader`, in order (they may have gaps).
fn notification_ids(leader: &Application) -> Vec<u64> {
    NotificationLogReader::new(leader)
        .read(1)
        .map(|n| n.expect("the leader's log").id)
        .collect()
}

/// What a tracking table holds for a leader whose every notification in
/// `ids` was processed once: each of them (multi-row), or the last
/// (single-row).
fn tracked_rows(layout: TrackingLayout, ids: Vec<u64>) -> Vec<u64> {
    match layout {
        TrackingLayout::MultiRow => ids,
        TrackingLayout::SingleRow => ids.last().copied().into_iter().collect(),
    }
}

/// Every follower has tracked each of its leader's notifications exactly
/// once: a multi-row table holds each of the leader's ids, no other; a
/// single-row one the last.
fn assert_tracked_once(shop: &Shop, persistence: &Persistence) {
    let system = &shop.system;
    for follower in system.followers() {
        for leader in system.leaders(follower) {
            let ids = notification_ids(system.app(leader).expect("leader"));
            assert_eq!(
                tracked_ids(persistence, follower, leader),
                tracked_rows(layout(persistence), ids),
                "{follower} tracks each notification of {leader} once"
            );
        }
    }
}

/// Places `n` orders, starts the Reservations follower (slow) in a child
/// process with that backlog, SIGKILLs it after it processed some but not
/// all, restarts it, lets it finish; checks that every order was reserved
/// once and every notification tracked once; then settles the rest of the
/// shop in this process.
fn exactly_once_across_a_crash(store: &str, persistence: &Persistence, prefix: &str) {
    const N: u64 = 60;
    let shop = shop_on(persistence, prefix, None).expect("the shop");
    let orders = place_orders(&shop, 0..N as usize);
    let leader = shop.orders.name().to_owned();
    let follower = shop.reservations.name().to_owned();
    let tracked = || {
        shop.reservations
            .recorder()
            .max_tracking_id(&leader)
            .expect("max tracking id")
    };
    // The orders' ids are 1..=N (placed one by one on fresh tables, none
    // failed): the highest tracked is how many were processed.
    assert_eq!(notification_ids(&shop.orders), (1..=N).collect::<Vec<_>>());
    let reserved = || stored_events(&shop.reservations).expect("reservations stored");

    // 25 ms per notification: the backlog takes 1.5 s; killed at 10.
    let mut first = [Follower::start(store, &follower, Some(25))];
    wait_until(
        "the follower has processed some orders",
        &mut first,
        || tracked() >= 10,
        || format!("tracked {}", tracked()),
    );
    first[0].kill();
    let at_kill = tracked();
    assert!(
        (10..N).contains(&at_kill),
        "{store}: the follower was killed mid-way through its backlog of {N}, after {at_kill}"
    );
    assert_eq!(
        reserved(),
        at_kill,
        "{store}: a reservation is stored with, and only with, its tracking record"
    );

    // Restarted: continues after the last tracked notification.
    let mut second = [Follower::start(store, &follower, Some(1))];
    wait_until(
        "the restarted follower has processed every order",
        &mut second,
        || tracked() == N,
        || format!("tracked {}", tracked()),
    );
    second[0].kill();

    assert_eq!(
        tracked_ids(persistence, &follower, &leader),
        tracked_rows(layout(persistence), (1..=N).collect()),
        "{store}: each order's notification tracked exactly once"
    );
    assert_eq!(reserved(), N, "{store}: one reservation per order, no more");
    for id in &orders {
        let reservation: annals_examples::shop::Reservation = shop
            .reservations
            .repository()
            .get(annals_examples::shop::Reservation::create_id(id))
            .expect("every order has a reservation");
        assert_eq!(
            (reservation.order_id, reservation.version()),
            (*id, 1),
            "{store}: exactly one reservation event per order"
        );
    }

    // The rest of the shop, in this process: Payments and Orders catch up.
    let processed = SingleThreadedRunner::new(shop.system.clone())
        .run()
        .expect("the rest of the shop");
    // Payments: N reservations; Orders: N payments; Reservations: the N
    // `Paid` events of Orders (it tracks them, storing nothing).
    assert_eq!(processed, 3 * N as usize, "{store}: processed once each");
    shop.check_settled(&orders).expect(store);
    assert_tracked_once(&shop, persistence);
}

#[test]
fn a_follower_killed_mid_batch_on_sqlite_repeats_and_loses_nothing() {
    let path = temp_sqlite("procs_crash");
    let persistence = Persistence::Sqlite(SqliteConfig::new(&path));
    exactly_once_across_a_crash(&format!("sqlite:{path}"), &persistence, "procs_crash");
}

/// The tables made multi-row here; the follower's process asks for the
/// default (single-row) and uses the tables as they are.
#[test]
fn a_follower_killed_mid_batch_on_sqlite_with_multi_row_tracking_loses_nothing() {
    let path = temp_sqlite("procs_crash_multi");
    let mut config = SqliteConfig::new(&path);
    config.tracking_layout = TrackingLayout::MultiRow;
    let persistence = Persistence::Sqlite(config);
    exactly_once_across_a_crash(&format!("sqlite:{path}"), &persistence, "procs_crash_multi");
}

fn postgres_for(prefix: &str) -> Option<PostgresConfig> {
    let Some(config) = postgres_server() else {
        annals_tests::skipped(&format!("{prefix} on postgres"));
        return None;
    };
    for name in app_names(prefix) {
        drop_postgres_tables(&config, &name);
    }
    Some(config)
}

#[test]
fn a_follower_killed_mid_batch_on_postgres_repeats_and_loses_nothing() {
    let prefix = "procs_crash";
    let Some(config) = postgres_for(prefix) else {
        return;
    };
    exactly_once_across_a_crash(
        &format!("postgres:{prefix}"),
        &Persistence::Postgres(config),
        prefix,
    );
}

#[test]
fn a_process_per_follower_on_postgres_settles_every_order_exactly_once() {
    let prefix = "procs_multi";
    let Some(config) = postgres_for(prefix) else {
        return;
    };
    every_follower_in_a_process_killed_and_restarted(
        &format!("postgres:{prefix}"),
        &Persistence::Postgres(config),
        prefix,
    );
}

/// Every follower of the shop in a process of its own: they settle every
/// order, are all killed, orders are placed while they are down, and once
/// restarted they settle those, the earlier ones not again.
fn every_follower_in_a_process_killed_and_restarted(
    store: &str,
    persistence: &Persistence,
    prefix: &str,
) {
    // Made here first, so the tables exist before the followers start.
    let shop = shop_on(persistence, prefix, None).expect("the shop");
    let start = |shop: &Shop| -> Vec<Follower> {
        shop.system
            .followers()
            .iter()
            .map(|name| Follower::start(store, name, None))
            .collect()
    };

    let mut followers = start(&shop);
    let mut orders = place_orders(&shop, 0..20);
    wait_until(
        "the followers in their processes settle every order",
        &mut followers,
        || settled(&shop, &orders).is_ok(),
        || format!("{:?}", settled(&shop, &orders)),
    );
    assert_tracked_once(&shop, persistence);

    // Every follower killed; orders placed while they are down are
    // processed once they are back, the earlier ones not again.
    for follower in &mut followers {
        follower.kill();
    }
    orders.extend(place_orders(&shop, 20..45));
    assert!(
        shop.check_settled(&orders).is_err(),
        "nobody processes while the followers are down"
    );
    let mut followers = start(&shop);
    wait_until(
        "the restarted followers settle every order",
        &mut followers,
        || settled(&shop, &orders).is_ok(),
        || format!("{:?}", settled(&shop, &orders)),
    );
    for follower in &mut followers {
        follower.kill();
    }
    shop.check_settled(&orders).expect("settled exactly once");
    assert_tracked_once(&shop, persistence);
}

fn mysql_for(prefix: &str) -> Option<MysqlConfig> {
    let Some(config) = mysql_server() else {
        annals_tests::skipped(&format!("{prefix} on mysql"));
        return None;
    };
    for name in app_names(prefix) {
        drop_mysql_tables(&config, &name);
    }
    Some(config)
}

#[test]
fn a_follower_killed_mid_batch_on_mysql_repeats_and_loses_nothing() {
    let prefix = "procs_my_crash";
    let Some(config) = mysql_for(prefix) else {
        return;
    };
    exactly_once_across_a_crash(
        &format!("mysql:{prefix}"),
        &Persistence::Mysql(config),
        prefix,
    );
}

/// Multi-row tracking tables made here; the follower's process asks for
/// the default (single-row) and uses the tables as they are.
#[test]
fn a_follower_killed_mid_batch_on_mysql_with_multi_row_tracking_loses_nothing() {
    let prefix = "procs_my_crash_multi";
    let Some(mut config) = mysql_for(prefix) else {
        return;
    };
    config.tracking_layout = TrackingLayout::MultiRow;
    exactly_once_across_a_crash(
        &format!("mysql:{prefix}"),
        &Persistence::Mysql(config),
        prefix,
    );
}

#[test]
fn a_process_per_follower_on_mysql_settles_every_order_exactly_once() {
    let prefix = "procs_my_multi";
    let Some(config) = mysql_for(prefix) else {
        return;
    };
    every_follower_in_a_process_killed_and_restarted(
        &format!("mysql:{prefix}"),
        &Persistence::Mysql(config),
        prefix,
    );
}
