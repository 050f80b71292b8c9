//! Phase two: check the parsed impl block for misuse. Every error points at
//! the offending tokens and says what to do.

use std::collections::HashMap;

use syn::visit::Visit;
use syn::{ReturnType, Type};

use crate::ast::{AggregateImpl, Arg, Kind, UpcastTarget};
use crate::parse::Errors;

const RESERVED: &[&str] = &[
    "timestamp",
    "originator_id",
    "originator_version",
    "correlation_id",
    "causation_id",
    "class_version",
    "_hash",
    "originator_topic",
];

pub(crate) fn aggregate_impl(agg: &AggregateImpl, errors: &mut Errors) {
    if let Some(module) = &agg.options.python {
        let value = module.value();
        let identifier = |part: &str| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        };
        if !value.split('.').all(identifier) {
            errors.spanned(
                module,
                format!("{value:?} is not a Python module path; expected dotted names, as in `python = \"dogschool\"` or `python = \"school.domain\"`"),
            );
        }
    }
    let namings: Vec<Naming<'_>> = agg
        .events
        .iter()
        .map(|(_, e)| Naming {
            name: &e.name,
            topic: &e.topic,
            aliases: &e.aliases,
            span: e.name_span,
            by: format!("`{}`", e.method.sig.ident),
        })
        .collect();
    names_and_topics(&namings, errors);
    for (_, event) in &agg.events {
        signature(&event.method.sig, event.kind, &agg.self_ident, errors);
        fields(&event.args, errors);
    }
    if let Some(events) = &agg.options.events {
        explicit(agg, events, errors);
    } else if !agg
        .events
        .iter()
        .any(|(_, e)| e.kind == Some(Kind::Creation))
    {
        errors.spanned(
            &agg.item.self_ty,
            format!(
                "aggregate `{}` has no creation event: mark a method that takes no `self` and returns `Self` with #[event(\"...\")]",
                agg.self_ident
            ),
        );
    }
    upcasters(agg, errors);
    if let Some(params) = &agg.create_id {
        for (_, event) in agg
            .events
            .iter()
            .filter(|(_, e)| e.kind == Some(Kind::Creation))
        {
            for param in params {
                if !event.args.iter().any(|a| a.ident == param.ident) {
                    errors.spanned(
                        &param.ident,
                        format!(
                            "create_id takes `{}`, which creation event method `{}` does not have; name create_id's parameters like the creation arguments",
                            param.ident, event.method.sig.ident
                        ),
                    );
                }
            }
        }
    }
}

/// One event's name and topics, for [`names_and_topics`].
pub(crate) struct Naming<'a> {
    pub name: &'a str,
    pub topic: &'a str,
    pub aliases: &'a [String],
    /// Where errors about the event point.
    pub span: proc_macro2::Span,
    /// What declares it, as errors name it (a method, a variant).
    pub by: String,
}

/// The checks every event enum needs, generated or written: names that are
/// Rust identifiers and unique, topics without Python's `:` and unique
/// (aliases included). One error per mistake: a second event of one name
/// is not reported again for the topic it then shares.
pub(crate) fn names_and_topics(events: &[Naming<'_>], errors: &mut Errors) {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut topics: HashMap<&str, &str> = HashMap::new();
    for event in events {
        if syn::parse_str::<syn::Ident>(event.name).is_err() {
            errors.at(
                event.span,
                format!("event name {:?} is not a Rust identifier; name events like types (\"TrickAdded\")", event.name),
            );
        } else if let Some(first) = names.insert(event.name, &event.by) {
            errors.at(
                event.span,
                format!("two events are named `{}` (the first is {first}); give each event its own name", event.name),
            );
            continue;
        }
        for topic in std::iter::once(event.topic).chain(event.aliases.iter().map(String::as_str)) {
            if topic.contains(':') {
                errors.at(
                    event.span,
                    format!("the topic {topic:?} has a `:`, which marks the Python library's topics (module:Class.Event); for those, give the aggregate `python = \"module\"`"),
                );
            }
            if let Some(first) = topics.insert(topic, &event.by) {
                errors.at(
                    event.span,
                    format!("two events have the topic {topic:?} (the first is {first}); give each event its own topic and aliases"),
                );
            }
        }
    }
}

/// The checks of an event's fields, from a method's arguments or a
/// variant's fields: none named as the fields every stored event has, none
/// borrowed (an event outlives the call that made it).
pub(crate) fn fields(args: &[Arg], errors: &mut Errors) {
    for arg in args {
        if RESERVED.contains(&arg.ident.to_string().as_str()) {
            errors.spanned(
                &arg.ident,
                format!(
                    "`{}` is the name of a field every event has; rename this field",
                    arg.ident
                ),
            );
        }
        let mut borrowed = Borrowed(None);
        borrowed.visit_type(&arg.ty);
        if let Some(message) = borrowed.0 {
            errors.spanned(&arg.ty, message);
        }
    }
    let mut subjects = args.iter().filter(|a| a.subject);
    if let (Some(_), Some(second)) = (subjects.next(), subjects.next()) {
        errors.spanned(
            &second.ident,
            "an event has one #[subject]: whose personal data it holds",
        );
    }
}

fn signature(
    sig: &syn::Signature,
    kind: Option<Kind>,
    self_ident: &syn::Ident,
    errors: &mut Errors,
) {
    if let Some(token) = &sig.asyncness {
        errors.spanned(
            token,
            "an #[event] method cannot be async: stored events are replayed synchronously; do async work in a plain method that then calls this one",
        );
    }
    if let Some(token) = &sig.constness {
        errors.spanned(token, "an #[event] method cannot be const");
    }
    if let Some(token) = &sig.unsafety {
        errors.spanned(token, "an #[event] method cannot be unsafe");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "an #[event] method cannot have an extern ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "an #[event] method cannot be generic: its arguments become the fields of a stored event, which need concrete types",
        );
    }
    for input in &sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            if matches!(&*typed.ty, Type::ImplTrait(_)) {
                errors.spanned(
                    &typed.ty,
                    "an #[event] method cannot take `impl Trait`: its arguments become the fields of a stored event, which need concrete types",
                );
            }
        }
    }
    match kind {
        None => {
            if let Some(receiver) = sig.receiver() {
                errors.spanned(
                    receiver,
                    if receiver.reference.is_some() && receiver.mutability.is_none() {
                        "an #[event] method changes the aggregate: take `&mut self`, not `&self`"
                    } else {
                        "an #[event] method takes `&mut self` (a command) or no `self` at all (a creation event)"
                    },
                );
            }
        }
        Some(Kind::Command) => {
            if let ReturnType::Type(_, ty) = &sig.output {
                if !is_unit(ty) {
                    errors.spanned(
                        ty,
                        "an #[event] method cannot return a value: when the stored event is replayed there is no caller to return it to; return nothing, and validate or compute in a plain method that calls this one",
                    );
                }
            }
        }
        Some(Kind::Creation) => {
            let returns_self = match &sig.output {
                ReturnType::Type(_, ty) => is_self(ty, self_ident),
                ReturnType::Default => false,
            };
            if !returns_self {
                let message = format!(
                    "a creation event method (one without `self`) must return `Self`: it builds the new `{self_ident}`; or, if it changes an aggregate, take `&mut self`"
                );
                match &sig.output {
                    ReturnType::Type(_, ty) => errors.spanned(ty, message),
                    ReturnType::Default => errors.spanned(&sig.ident, message),
                }
            }
        }
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

fn is_self(ty: &Type, self_ident: &syn::Ident) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.is_ident("Self") || p.path.is_ident(self_ident)
        }
        _ => false,
    }
}

/// Finds a borrowed type (reference or non-static lifetime) in an event's
/// field.
struct Borrowed(Option<&'static str>);

impl Visit<'_> for Borrowed {
    fn visit_type_reference(&mut self, _: &syn::TypeReference) {
        self.0.get_or_insert(
            "an event's field must own its data (the event is stored and replayed): take an owned type, e.g. `String` instead of `&str`",
        );
    }
    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if lifetime.ident != "static" {
            self.0.get_or_insert(
                "an event's field cannot borrow (the event is stored and replayed): take an owned type",
            );
        }
    }
}

/// Every version below the current one has exactly one upcaster, and every
/// upcaster upgrades a version that exists.
fn upcasters(agg: &AggregateImpl, errors: &mut Errors) {
    let snapshot_version = agg
        .options
        .version
        .as_ref()
        .and_then(|v| v.base10_parse::<u32>().ok())
        .unwrap_or(1);
    let mut seen = std::collections::HashSet::new();
    for upcaster in &agg.upcasters {
        let (name, current) = match &upcaster.target {
            UpcastTarget::Snapshot => ("the snapshot state".to_owned(), snapshot_version),
            // Refused in `explicit`: the enum's variants upcast.
            UpcastTarget::Event(_) if agg.options.events.is_some() => continue,
            UpcastTarget::Event(name) => match agg.events.iter().find(|(_, e)| &e.name == name) {
                Some((_, e)) => (format!("event {name}"), e.version),
                None => {
                    errors.at(
                            upcaster.target_span,
                            format!("no event is named {name:?}: an upcaster upgrades one of this aggregate's events"),
                        );
                    continue;
                }
            },
        };
        if upcaster.from >= current {
            errors.at(
                upcaster.from_span,
                format!(
                    "{name} is at version {current}: an upcaster from version {} has no version to upgrade to (raise the version, or remove this upcaster)",
                    upcaster.from
                ),
            );
        }
        if !seen.insert((upcaster.target.clone(), upcaster.from)) {
            errors.at(
                upcaster.from_span,
                format!("{name} has two upcasters from version {}", upcaster.from),
            );
        }
    }
    let missing = |target: &UpcastTarget, current: u32| {
        (1..current).find(|from| !seen.contains(&(target.clone(), *from)))
    };
    for (_, event) in &agg.events {
        let target = UpcastTarget::Event(event.name.clone());
        if let Some(from) = missing(&target, event.version) {
            errors.at(
                event.version_span,
                format!(
                    "event {} is at version {} but has no upcaster from version {from}: add `#[upcast(\"{}\", from = {from})] fn ...(state: &mut annals::json::Value)` that turns a version {from} state into a version {} one",
                    event.name, event.version, event.name, from + 1
                ),
            );
        }
    }
    if let Some(from) = missing(&UpcastTarget::Snapshot, snapshot_version) {
        let span = agg
            .options
            .version
            .as_ref()
            .map_or_else(proc_macro2::Span::call_site, syn::LitInt::span);
        errors.at(
            span,
            format!(
                "the snapshot state is at version {snapshot_version} but has no upcaster from version {from}: add `#[upcast(snapshot, from = {from})] fn ...(state: &mut annals::json::Value)`"
            ),
        );
    }
}

/// With `events = Enum`, the events are the enum's: no `#[event]` method,
/// no event upcaster here, no option that shapes a generated enum.
fn explicit(agg: &AggregateImpl, events: &syn::Type, errors: &mut Errors) {
    let events = quote::quote!(#events).to_string().replace(' ', "");
    for (_, event) in &agg.events {
        errors.at(
            event.name_span,
            format!(
                "with `events = {events}`, the events are {events}'s variants: record one with \
                 `self.record({events}::...)` in a plain method, without #[event]"
            ),
        );
    }
    for upcaster in &agg.upcasters {
        if let UpcastTarget::Event(_) = upcaster.target {
            errors.at(
                upcaster.target_span,
                format!(
                    "an event of {events} is upcast on its variant: \
                     #[annals(upcast(from = N, with = function))]"
                ),
            );
        }
    }
    let generated = [
        agg.options.event.as_ref().map(syn::Ident::span),
        agg.options
            .event_vis
            .as_ref()
            .map(syn::spanned::Spanned::span),
        agg.options.derives.first().map(syn::spanned::Spanned::span),
    ];
    for span in generated.into_iter().flatten() {
        errors.at(
            span,
            format!(
                "`event`, `event_vis` and `derive` shape the enum #[aggregate] makes: \
                 with `events = {events}`, {events} is yours"
            ),
        );
    }
}
