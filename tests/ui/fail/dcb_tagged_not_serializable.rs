#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Tagged)]
struct Joined {
    #[tag]
    course: String,
}
fn main() {}
