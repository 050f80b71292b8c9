#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Tagged)]
struct Joined {
    #[tag]
    course: String,
}

#[derive(Serialize, Deserialize, Tagged)]
#[dcb(type = "Joined")]
struct JoinedAgain {
    #[tag]
    course: String,
}

#[derive(DcbEvents)]
enum CourseEvent {
    Joined(Joined),
    Again(JoinedAgain),
}
fn main() {}
