#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Tagged)]
#[dcb(name = "Joined")]
struct Joined {
    #[tag]
    course: String,
}
fn main() {}
