//! The knobs (environment variables) and small helpers for reports.

const DEFAULT_ITERS: usize = 9_600;
const DEFAULT_SEED: u64 = 0x0a11_a15f_0022;

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

pub(crate) fn iterations() -> usize {
    env_number("ANNALS_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS)
}

pub(crate) fn seed() -> u64 {
    env_number("ANNALS_FUZZ_SEED").unwrap_or(DEFAULT_SEED)
}

pub(crate) fn hostile() -> bool {
    std::env::var("ANNALS_FUZZ_HOSTILE").is_ok_and(|v| v == "1")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a non-string panic payload)".to_owned())
}
