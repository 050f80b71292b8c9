use annals::prelude::*;

pub struct Cat;

impl Cat {
    #[event("Meowed")]
    pub fn meow(&mut self) {}
}

fn main() {}
