// Every option of #[aggregate] and #[event], including a renamed path to
// the runtime crate, and private event methods behind validating commands.
mod runtime {
    pub use ::annals as renamed;
}

use annals::prelude::*;

#[aggregate(crate = "crate::runtime::renamed")]
#[derive(Debug, Default)]
struct Ledger {
    lines: Vec<(String, i64)>,
}

#[aggregate(crate = "crate::runtime::renamed", id = String, initial_version = 0, name = "accounts.Ledger", derive(PartialEq, Eq))]
impl Ledger {
    #[event]
    fn open() -> Self {
        Ledger { lines: Vec::new() }
    }

    #[event("Posted", topic = "accounts.Posted.v1")]
    fn post(&mut self, mut label: String, amount: i64) {
        label.make_ascii_uppercase();
        self.lines.push((label, amount));
    }

    #[event(name = "Archived", discard)]
    fn archive(&mut self) {}

    pub fn post_checked(&mut self, label: &str, amount: i64) -> Result<(), &'static str> {
        if amount == 0 {
            return Err("nothing to post");
        }
        self.post(label.to_owned(), amount);
        Ok(())
    }
}

fn main() {
    let mut ledger = Ledger::open_with_id("ledger-1");
    assert_eq!(ledger.id(), "ledger-1");
    assert_eq!(ledger.version(), 0);
    ledger.post_checked("rent", -5).unwrap();
    assert!(ledger.post_checked("nothing", 0).is_err());
    assert_eq!(ledger.lines, [("RENT".to_owned(), -5)]);
    assert_eq!(
        LedgerEvent::TOPICS,
        ["accounts.Ledger.Open", "accounts.Posted.v1", "accounts.Ledger.Archived"]
    );
    assert_eq!(
        ledger.pending_events()[1].event,
        LedgerEvent::Posted { label: "rent".into(), amount: -5 }
    );
    ledger.archive();
    assert!(ledger.is_discarded());
    let _ = Ledger::default();
}
