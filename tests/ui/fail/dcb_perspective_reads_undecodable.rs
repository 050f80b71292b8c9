#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Tagged)]
struct Joined {
    #[tag]
    course: String,
}

struct Course {
    students: u32,
}

impl annals::dcb::Perspective for Course {
    type Events = String;
    fn tags(&self) -> Vec<String> {
        vec![]
    }
    fn apply(&mut self, _: String) {
        self.students += 1;
    }
}
fn main() {}
