// The event enum's name and visibility set on the impl block. A visibility
// narrower than the struct's compiles (no E0446 for `type Event`), and an
// enum as private as its struct carries argument types as private without
// `private_interfaces` warnings. (The event type stays reachable as
// `<Dog as Aggregate>::Event`, so it is as reachable as its struct.)
#![deny(warnings, private_interfaces, private_bounds)]

mod dogs {
    use annals::prelude::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Trick(pub(crate) String);

    #[aggregate]
    #[derive(Debug)]
    pub struct Dog {
        pub tricks: Vec<Trick>,
    }

    #[aggregate(event = "DogChange", event_vis = "pub(crate)", derive(PartialEq))]
    impl Dog {
        #[event("Registered")]
        pub fn register() -> Self {
            Dog { tricks: Vec::new() }
        }

        #[event("TrickAdded")]
        pub(crate) fn add_trick(&mut self, trick: self::Trick) {
            self.tricks.push(trick);
        }
    }

    pub(crate) mod cats {
        use annals::prelude::*;

        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        struct Whisker(u8);

        #[aggregate]
        struct Cat {
            whiskers: Vec<Whisker>,
            pub tricks: Vec<super::Trick>,
        }

        // Private: visible in this module only, like `Whisker`.
        #[aggregate(event_vis = "")]
        impl Cat {
            #[event("Born")]
            pub fn born() -> Self {
                Cat { whiskers: Vec::new(), tricks: Vec::new() }
            }

            #[event("WhiskerGrown")]
            fn grow(&mut self, whisker: Whisker) {
                self.whiskers.push(whisker);
            }

            #[event("Copied")]
            pub(crate) fn copy(&mut self, trick: super::Trick) {
                self.tricks.push(trick);
            }

            pub(crate) fn grow_one(&mut self) -> usize {
                self.grow(Whisker(1));
                assert!(matches!(
                    self.pending_events().last().map(|e| &e.event),
                    Some(CatEvent::WhiskerGrown { .. })
                ));
                self.whiskers.len() + usize::from(self.whiskers[0].0)
            }
        }

        pub(crate) fn run() -> usize {
            let mut cat = Cat::born();
            cat.copy(super::Trick("jump".into()));
            assert_eq!(cat.tricks.len(), 1);
            cat.grow_one()
        }
    }
}

fn main() {
    use annals::Aggregate;
    use dogs::{Dog, DogChange, Trick};
    let mut dog = Dog::register();
    dog.add_trick(Trick("sit".into()));
    assert_eq!(
        dog.pending_events()[1].event,
        DogChange::TrickAdded { trick: Trick("sit".into()) }
    );
    assert_eq!(dog.tricks[0].0, "sit");
    assert_eq!(dogs::cats::run(), 2);
}
