#![allow(unused_imports, dead_code)]
use annals::prelude::*;

/// A type with no `Default`: a forgotten field of it needs
/// `#[personal(forgotten = ...)]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Email(String);

#[aggregate]
#[derive(Debug)]
struct Customer {
    email: Email,
}

#[aggregate]
impl Customer {
    #[event("Registered")]
    fn register(#[personal] email: Email) -> Self {
        Customer { email }
    }
}

fn main() {}
