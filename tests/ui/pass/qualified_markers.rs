// `#[annals::event]`, `#[::annals::event]` and `#[annals::upcast]` are read
// by `#[annals::aggregate]` like `#[event]` and `#[upcast]`.
#[annals::aggregate]
#[derive(Debug)]
pub struct Dog {
    pub name: String,
    pub tricks: Vec<String>,
}

#[annals::aggregate]
impl Dog {
    #[annals::event("Registered")]
    pub fn register(name: String) -> Self {
        Dog { name, tricks: Vec::new() }
    }

    #[::annals::event(version = 2)]
    pub fn add_trick(&mut self, trick: String) {
        self.tricks.push(trick);
    }

    #[annals::upcast("AddTrick", from = 1)]
    fn trick_v1(state: &mut annals::json::Value) {
        state["trick"] = "sit".into();
    }
}

fn main() {
    use annals::Aggregate;
    use annals::Event;
    let mut dog = Dog::register("Fido".into());
    dog.add_trick("roll".into());
    assert_eq!(dog.version(), 2);
    assert_eq!(DogEvent::TOPICS, ["Dog.Registered", "Dog.AddTrick"]);
    assert_eq!(DogEvent::VERSIONS, [1, 2]);
    assert_eq!(dog.tricks, ["roll"]);
}
