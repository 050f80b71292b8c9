#![allow(unused_imports, dead_code)]
use annals::dcb::{DcbEvents, Tagged};
use serde::{Deserialize, Serialize};

#[derive(DcbEvents)]
enum CourseEvent {}
fn main() {}
