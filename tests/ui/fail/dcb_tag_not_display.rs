#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Tagged)]
struct Joined {
    #[tag]
    courses: Vec<String>,
}
fn main() {}
