#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Tagged)]
struct Joined {
    #[tag]
    course: String,
}

#[derive(DcbEvents)]
#[dcb(type = "Course")]
enum CourseEvent {
    Joined(Joined),
}
fn main() {}
