//! The macro's own small AST of an `#[aggregate]` impl block.

use proc_macro2::Span;
use syn::{Ident, ImplItemFn, LitInt, LitStr, Path, Type};

/// The name of the hidden metadata field that `#[aggregate]` adds to the
/// struct.
pub(crate) const META_FIELD: &str = "__annals";

/// Options of `#[aggregate(...)]` on the impl block.
pub(crate) struct Options {
    pub krate: Path,
    pub name: Option<LitStr>,
    pub id: Option<Type>,
    pub initial_version: Option<LitInt>,
    pub derives: Vec<Path>,
    /// The version of the snapshot state (`version = N`), with its span.
    pub version: Option<LitInt>,
    /// Former names of the aggregate: its events' old topic prefixes.
    pub aliases: Vec<LitStr>,
    /// The event enum's name (`event = "DogChange"`; default `{Type}Event`).
    pub event: Option<Ident>,
    /// The event enum's visibility (`event_vis = "pub(crate)"`; default
    /// `pub`).
    pub event_vis: Option<syn::Visibility>,
    /// The Python module of the aggregate's class (`python = "dogschool"`),
    /// for the Python codec's topics.
    pub python: Option<LitStr>,
    /// The user's event enum (`events = DogEvent`, the explicit style):
    /// no `#[event]` methods, the events applied by `annals::Apply` (or `Evolve`).
    pub events: Option<Type>,
}

/// Whether an event creates its aggregate or changes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Creation,
    Command,
}

/// One argument of an event method: one field of the event.
pub(crate) struct Arg {
    pub ident: Ident,
    pub ty: Type,
    /// `#[serde(..)]` attributes on the argument, for the event's field.
    pub serde: Vec<syn::Attribute>,
    /// The same for the reference struct that serializes events: without
    /// `with = "X"`, which is `with` (the reference struct calls X through
    /// a wrapper).
    pub ref_serde: Vec<proc_macro2::TokenStream>,
    pub with: Option<LitStr>,
    /// Whether those give the field its own serialization (`with`,
    /// `serialize_with`), and deserialization (`with`, `deserialize_with`).
    pub serialize_with: bool,
    pub deserialize_with: bool,
    /// `#[personal]`: sealed with the subject's data key.
    pub personal: Option<Personal>,
    /// `#[subject]`: whose personal data the event holds.
    pub subject: bool,
}

/// A `#[personal]` mark.
pub(crate) struct Personal {
    /// `forgotten = expr`: what the field reads as once its subject is
    /// forgotten (`Default::default()` when not given).
    pub forgotten: Option<syn::Expr>,
}

/// One `#[event]` method.
pub(crate) struct EventDef {
    /// The method, without its `#[event]` attribute.
    pub method: ImplItemFn,
    /// The event's name (the enum variant).
    pub name: String,
    /// Where errors about the name point.
    pub name_span: Span,
    pub topic: String,
    pub discard: bool,
    /// The event's version (`version = N`, default 1), with its span.
    pub version: u32,
    pub version_span: Span,
    /// Former topics that still decode to this event.
    pub aliases: Vec<String>,
    /// `None` when the signature is neither a creation nor a command (an
    /// error has been reported).
    pub kind: Option<Kind>,
    pub args: Vec<Arg>,
}

/// What an upcaster upgrades.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum UpcastTarget {
    /// The event with this name.
    Event(String),
    /// The aggregate's snapshot state.
    Snapshot,
}

/// An `#[upcast(..)]` function: turns a stored state from version `from`
/// into version `from + 1`.
pub(crate) struct Upcaster {
    pub target: UpcastTarget,
    pub target_span: Span,
    pub from: u32,
    pub from_span: Span,
    pub function: Ident,
}

/// A parameter of `create_id`.
pub(crate) struct CreateIdParam {
    pub ident: Ident,
    pub by_ref: bool,
}

/// The parsed impl block.
pub(crate) struct AggregateImpl {
    pub options: Options,
    pub self_ident: Ident,
    pub item: syn::ItemImpl,
    /// Indices into `item.items` of the event methods, and their defs.
    pub events: Vec<(usize, EventDef)>,
    pub create_id: Option<Vec<CreateIdParam>>,
    pub upcasters: Vec<Upcaster>,
    /// In the explicit style, whether the block is `impl Evolve` (the
    /// immutable form: `evolve` returns the next state) rather than
    /// `impl Apply`.
    pub evolves: bool,
}
