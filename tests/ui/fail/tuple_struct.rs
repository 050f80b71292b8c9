use annals::prelude::*;

#[aggregate]
pub struct Dog(String);

fn main() {}
