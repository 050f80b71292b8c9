//! One follower of the shop in a process of its own, for the multi-process
//! tests: `shop_follower STORE NAME`, STORE `sqlite:PATH` or
//! `postgres:PREFIX` or `mysql:PREFIX`, NAME the follower's application name (e.g.
//! `{prefix}_reservations`). Runs until killed. With
//! `SHOP_FOLLOWER_DELAY_MS` set, every policy sleeps that many
//! milliseconds per notification, so a kill lands in the middle of a batch.

use std::time::Duration;

use annals::log::Stopper;
use annals_tests::shops::{parse_store, shop_on};

fn fail(message: &str, code: i32) -> ! {
    eprintln!("shop_follower: {message}");
    std::process::exit(code)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(store), Some(name)) = (args.next(), args.next()) else {
        fail(
            "usage: shop_follower sqlite:PATH|postgres:PREFIX|mysql:PREFIX NAME",
            2,
        )
    };
    let delay = match std::env::var("SHOP_FOLLOWER_DELAY_MS") {
        Ok(ms) => Some(Duration::from_millis(ms.parse().unwrap_or_else(|e| {
            fail(&format!("SHOP_FOLLOWER_DELAY_MS={ms}: {e}"), 2)
        }))),
        Err(_) => None,
    };
    let (persistence, prefix) = parse_store(&store).unwrap_or_else(|e| fail(&e, 2));
    let shop = shop_on(&persistence, &prefix, delay)
        .unwrap_or_else(|e| fail(&format!("opening the shop on {store}: {e}"), 1));
    if let Err(e) = shop
        .system
        .run_follower(&name, &Stopper::new(), Duration::from_millis(50))
    {
        fail(&format!("follower {name} stopped: {e}"), 1);
    }
}
