#![allow(unused_imports, dead_code, unused_variables)]
use annals::prelude::*;

#[aggregate]
#[derive(Debug)]
struct Customer {
    name: String,
}

#[aggregate]
impl Customer {
    // An unknown option, a field written by serde's `with` as well, and a
    // subject that is also personal, two subjects: one error each.
    #[event("Registered")]
    fn register(
        #[personal(forget = "?".to_owned())] name: String,
        #[personal] #[serde(with = "annals::transcoding::python")] id: Uuid,
        #[subject] #[personal] customer: Uuid,
        #[subject] other: Uuid,
    ) -> Self {
        Customer { name }
    }
}

fn main() {}
