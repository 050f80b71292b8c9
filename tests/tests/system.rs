//! The system layer in one process: graph checks, the log reader and
//! subscriptions, process applications with each in-process runner, and
//! bringing followers up to date on demand.

use std::sync::Arc;
use std::time::Duration;

use annals::persistence::NotificationQuery;
use annals::prelude::*;
use annals::system::{
    MultiThreadedRunner, NotificationLogReader, Processing, SingleThreadedRunner, Subscription,
    SyncOptions, System, Upstream,
};
use annals::Persistence;
use annals_examples::shop::{self, Order, Shop};
use annals_tests::stores::every_store_for;

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
