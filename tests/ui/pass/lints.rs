//! The user's lints do not fire on generated code.
#![deny(
    warnings,
    missing_docs,
    unused_qualifications,
    missing_debug_implementations,
    unreachable_pub,
    elided_lifetimes_in_paths,
    single_use_lifetimes,
    unused_lifetimes,
    unused_results,
    trivial_casts,
    trivial_numeric_casts,
    variant_size_differences,
    missing_copy_implementations,
    let_underscore_drop,
    redundant_lifetimes,
    unit_bindings,
    unnameable_types,
    non_camel_case_types,
    non_snake_case
)]

/// Dogs.
pub mod dogs {
    use annals::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A dog.
    #[aggregate]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Dog {
        /// Its name.
        pub name: String,
        /// What it can do.
        pub tricks: Vec<String>,
    }

    #[aggregate(version = 2)]
    impl Dog {
        /// Registers a dog.
        #[event("Registered")]
        pub fn register(name: String) -> Self {
            Self { name, tricks: Vec::new() }
        }

        /// Teaches it a trick.
        #[event("TrickAdded", version = 2)]
        pub fn add_trick(&mut self, trick: String) {
            self.tricks.push(trick);
        }

        /// Forgets everything.
        #[event(discard)]
        pub fn forget(&mut self) {
            self.tricks.clear();
        }

        #[upcast("TrickAdded", from = 1)]
        fn trick_v1(state: &mut annals::json::Value) {
            state["trick"] = "sit".into();
        }

        #[upcast(snapshot, from = 1)]
        fn state_v1(state: &mut annals::json::Value) {
            state["tricks"] = annals::json::json!([]);
        }

        /// Its id.
        pub fn create_id(name: &str) -> Uuid {
            Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
        }
    }
}

fn main() {
    use annals::Aggregate;
    let mut dog = dogs::Dog::register("Rex".into());
    dog.add_trick("sit".into());
    dog.forget();
    assert!(dog.is_discarded());
}
