//! `annals`: an operator's command line for annals stores.

fn main() {}
