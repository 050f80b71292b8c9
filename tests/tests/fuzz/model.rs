//! The model: two aggregates whose rows the fuzzer mutates, with many
//! field types (`Pet`) and upcasters (`Cat`).

use annals::json::{json, Value};
use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// A nested struct in `Pet`'s state and its `Collared` event (visible to
/// the crate, as the event enum the aggregate macro declares is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Collar {
    pub(crate) colour: String,
    pub(crate) size: u8,
}

/// Many field types: strings, integers of several widths, floats, options,
/// vectors, a nested struct, a UUID, bytes.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pet {
    name: String,
    age: u32,
    pub(crate) tags: Vec<String>,
    weight: Option<f64>,
    owner: Option<Uuid>,
    score: i64,
    collar: Option<Collar>,
    chip: Vec<u8>,
    gone: bool,
}

#[aggregate]
impl Pet {
    #[event("Adopted")]
    pub(crate) fn adopt(name: String, age: u32) -> Self {
        Pet {
            name,
            age,
            tags: Vec::new(),
            weight: None,
            owner: None,
            score: 0,
            collar: None,
            chip: Vec::new(),
            gone: false,
        }
    }

    #[event("Tagged")]
    pub(crate) fn tag(&mut self, tag: String) {
        self.tags.push(tag);
    }

    #[event("Weighed")]
    pub(crate) fn weigh(&mut self, kg: f64) {
        self.weight = Some(kg);
    }

    #[event("Owned")]
    pub(crate) fn own(&mut self, owner: Uuid) {
        self.owner = Some(owner);
    }

    #[event("Scored")]
    pub(crate) fn score(&mut self, by: i64, note: Option<String>, chip: Vec<u8>) {
        self.score = self.score.saturating_add(by);
        let _ = note;
        self.chip = chip;
    }

    #[event("Collared")]
    pub(crate) fn collar(&mut self, collar: Collar) {
        self.collar = Some(collar);
    }

    #[event("Left", discard)]
    pub(crate) fn leave(&mut self) {
        self.gone = true;
    }
}

/// String ids, versioned events and state with upcasters: the decode path
/// through `serde_json::Value`.
#[aggregate]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cat {
    title: String,
    lives: u8,
    naps: Vec<(String, u16)>,
}

#[aggregate(id = String, version = 2, aliases = ["Kitten"])]
impl Cat {
    #[event("Born", version = 2)]
    pub(crate) fn born(title: String, lives: u8) -> Self {
        Cat {
            title,
            lives,
            naps: Vec::new(),
        }
    }

    #[upcast("Born", from = 1)]
    fn born_v1(state: &mut Value) {
        if let Some(object) = state.as_object_mut() {
            let name = object.remove("name").unwrap_or_default();
            object.insert("title".into(), name);
            object.insert("lives".into(), 9.into());
        }
    }

    #[event("Napped")]
    pub(crate) fn nap(&mut self, place: String, minutes: u16) {
        self.naps.push((place, minutes));
    }

    #[upcast(snapshot, from = 1)]
    fn state_v1(state: &mut Value) {
        if let Some(object) = state.as_object_mut() {
            let name = object.remove("name").unwrap_or_default();
            object.insert("title".into(), name);
            object.entry("lives").or_insert(9.into());
            object.entry("naps").or_insert(json!([]));
        }
    }
}
