//! Phase two: check the parsed impl block for misuse. Every error points at
//! the offending tokens and says what to do.

use std::collections::HashMap;

use syn::visit::Visit;
use syn::{ReturnType, Type};

use crate::ast::{AggregateImpl, Kind};
use crate::parse::Errors;

const RESERVED: &[&str] = &["timestamp", "originator_id", "originator_version"];

pub fn aggregate_impl(agg: &AggregateImpl, errors: &mut Errors) {
    let mut names: HashMap<&str, &syn::Ident> = HashMap::new();
    let mut topics: HashMap<&str, &syn::Ident> = HashMap::new();
    for (_, event) in &agg.events {
        let method = &event.method.sig.ident;
        if syn::parse_str::<syn::Ident>(&event.name).is_err() {
            errors.at(
                event.name_span,
                format!("event name {:?} is not a Rust identifier; name events like types (\"TrickAdded\")", event.name),
            );
        } else if let Some(first) = names.insert(&event.name, method) {
            errors.at(
                event.name_span,
                format!("two events are named `{}` (the first is `{first}`); give each event its own name", event.name),
            );
        }
        if let Some(first) = topics.insert(&event.topic, method) {
            errors.at(
                event.name_span,
                format!("two events have the topic {:?} (the first is `{first}`); give each event its own topic", event.topic),
            );
        }
        signature(&event.method.sig, event.kind, &agg.self_ident, errors);
        for arg in &event.args {
            if RESERVED.contains(&arg.ident.to_string().as_str()) {
                errors.spanned(
                    &arg.ident,
                    format!(
                        "`{}` is the name of a field every event has; rename this argument",
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
    }
    if !agg
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

/// Finds a borrowed type (reference or non-static lifetime) in an argument.
struct Borrowed(Option<&'static str>);

impl Visit<'_> for Borrowed {
    fn visit_type_reference(&mut self, _: &syn::TypeReference) {
        self.0.get_or_insert(
            "an #[event] argument must own its data (the event is stored and replayed): take an owned type, e.g. `String` instead of `&str`",
        );
    }
    fn visit_lifetime(&mut self, lifetime: &syn::Lifetime) {
        if lifetime.ident != "static" {
            self.0.get_or_insert(
                "an #[event] argument cannot borrow (the event is stored and replayed): take an owned type",
            );
        }
    }
}
