//! Phase one: read the impl block and its `#[event]` markers into the AST.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ImplItem, ItemImpl, LitStr, Pat, Path, Type};

use crate::ast::{
    AggregateImpl, Arg, CreateIdParam, EventDef, Kind, Options, UpcastTarget, Upcaster,
};

/// Errors gathered while reading, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_error(self) -> Option<syn::Error> {
        self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// `Err` with every error gathered, if there is one.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The default path of the runtime crate.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::annals)
}

/// Reads `crate = "path"`, for the struct, where nothing else is accepted.
pub(crate) fn struct_options(args: TokenStream, errors: &mut Errors) -> Path {
    let mut krate = default_crate();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            krate = meta.value()?.parse::<LitStr>()?.parse()?;
            Ok(())
        } else {
            Err(meta.error(
                "unknown option of #[aggregate] on a struct; it takes only `crate = \"path\"` (put the others on the impl block)",
            ))
        }
    });
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    krate
}

fn options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options {
        krate: default_crate(),
        name: None,
        id: None,
        initial_version: None,
        derives: Vec::new(),
        version: None,
        aliases: Vec::new(),
        event: None,
        event_vis: None,
        python: None,
        events: None,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            options.krate = meta.value()?.parse::<LitStr>()?.parse()?;
        } else if meta.path.is_ident("name") {
            options.name = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("id") {
            options.id = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("initial_version") {
            options.initial_version = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("version") {
            options.version = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("aliases") {
            options.aliases = string_list(meta.value()?)?;
        } else if meta.path.is_ident("event") {
            let lit: LitStr = meta.value()?.parse()?;
            let ident = lit.parse::<syn::Ident>().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format!(
                        "{:?} is not a type name; name the event enum like a type (\"DogChange\")",
                        lit.value()
                    ),
                )
            })?;
            options.event = Some(ident);
        } else if meta.path.is_ident("event_vis") {
            let lit: LitStr = meta.value()?.parse()?;
            let vis = lit.parse::<syn::Visibility>().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format!("{:?} is not a visibility; expected e.g. \"pub\", \"pub(crate)\", \"pub(super)\" or \"\" (private)", lit.value()),
                )
            })?;
            // `LitStr::parse` spans the tokens at the string.
            options.event_vis = Some(vis);
        } else if meta.path.is_ident("python") {
            options.python = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("events") {
            options.events = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("derive") {
            meta.parse_nested_meta(|derive| {
                options.derives.push(derive.path);
                Ok(())
            })?;
        } else {
            return Err(meta.error(
                "unknown option of #[aggregate]; expected `name = \"...\"`, `id = Type`, `initial_version = N`, `version = N`, `aliases = [\"...\"]`, `event = \"Name\"`, `event_vis = \"pub(crate)\"`, `derive(...)`, `python = \"module\"`, `events = EnumType` or `crate = \"path\"`",
            ));
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    options
}

struct EventAttr {
    name: Option<LitStr>,
    topic: Option<LitStr>,
    discard: bool,
    version: Option<syn::LitInt>,
    aliases: Vec<LitStr>,
}

/// `["a", "b"]`.
pub(crate) fn string_list(input: ParseStream) -> syn::Result<Vec<LitStr>> {
    let content;
    syn::bracketed!(content in input);
    let list = content.parse_terminated(|i: ParseStream| i.parse::<LitStr>(), syn::Token![,])?;
    Ok(list.into_iter().collect())
}

pub(crate) fn version_of(lit: &syn::LitInt) -> syn::Result<u32> {
    match lit.base10_parse::<u32>()? {
        0 => Err(syn::Error::new(lit.span(), "versions start at 1")),
        v => Ok(v),
    }
}

fn event_attr(attr: &Attribute) -> syn::Result<EventAttr> {
    let mut parsed = EventAttr {
        name: None,
        topic: None,
        discard: false,
        version: None,
        aliases: Vec::new(),
    };
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return Ok(parsed);
    }
    attr.parse_args_with(|input: ParseStream| {
        if input.peek(LitStr) {
            parsed.name = Some(input.parse()?);
            if input.is_empty() {
                return Ok(());
            }
            input.parse::<syn::Token![,]>()?;
        }
        let options = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                parsed.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("topic") {
                parsed.topic = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("discard") {
                parsed.discard = true;
            } else if meta.path.is_ident("version") {
                let lit: syn::LitInt = meta.value()?.parse()?;
                version_of(&lit)?;
                parsed.version = Some(lit);
            } else if meta.path.is_ident("aliases") {
                parsed.aliases = string_list(meta.value()?)?;
            } else {
                return Err(meta.error(
                    "unknown option of #[event]; expected the event's name (\"TrickAdded\"), `topic = \"...\"`, `version = N`, `aliases = [\"...\"]` or `discard`",
                ));
            }
            Ok(())
        });
        options.parse2(input.parse()?)
    })?;
    Ok(parsed)
}

/// Whether `attr` is the marker `name`: `#[event]`, `#[annals::event]`,
/// `#[::annals::event]` or any other path ending in `name` (the macros are
/// re-exported, so the crate may be renamed).
fn is_marker(attr: &Attribute, name: &str) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|last| last.ident == name && last.arguments.is_none())
}

fn is_event_attr(attr: &Attribute) -> bool {
    is_marker(attr, "event")
}

/// `add_trick` -> `AddTrick`.
fn upper_camel(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn kind_of(sig: &syn::Signature) -> Option<Kind> {
    match sig.receiver() {
        None => Some(Kind::Creation),
        Some(r) if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() => {
            Some(Kind::Command)
        }
        Some(_) => None,
    }
}

/// Which of `with`, `serialize_with` and `deserialize_with` a `#[serde(..)]`
/// attribute sets: (serialization, deserialization).
fn serde_with(attr: &Attribute) -> syn::Result<(bool, bool)> {
    let (mut ser, mut de) = (false, false);
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("with") {
            (ser, de) = (true, true);
        } else if meta.path.is_ident("serialize_with") {
            ser = true;
        } else if meta.path.is_ident("deserialize_with") {
            de = true;
        }
        // Skip the value, whatever its shape: serde checks it.
        if meta.input.peek(syn::Token![=]) {
            meta.value()?.parse::<syn::Expr>()?;
        } else if meta.input.peek(syn::token::Paren) {
            meta.parse_nested_meta(|inner| {
                if inner.input.peek(syn::Token![=]) {
                    inner.value()?.parse::<syn::Expr>()?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok((ser, de))
}

/// `attr` without its `with = "X"`, and X: the reference struct that
/// serializes an event passes `&&T`, so it calls X through a wrapper that
/// passes `&T`, as serde would for a field of type `T`.
fn split_with(attr: &Attribute) -> syn::Result<(Vec<TokenStream>, Option<LitStr>)> {
    let mut kept = Vec::new();
    let mut with = None;
    attr.parse_nested_meta(|meta| {
        let path = meta.path.clone();
        if meta.input.peek(syn::Token![=]) {
            let value: syn::Expr = meta.value()?.parse()?;
            match (&value, path.is_ident("with")) {
                (
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(lit),
                        ..
                    }),
                    true,
                ) => {
                    with = Some(lit.clone());
                }
                _ => kept.push(quote::quote!(#path = #value)),
            }
        } else if meta.input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in meta.input);
            let inner: TokenStream = content.parse()?;
            kept.push(quote::quote!(#path(#inner)));
        } else {
            kept.push(quote::quote!(#path));
        }
        Ok(())
    })?;
    Ok((kept, with))
}

/// The event's fields from the method's arguments; their `#[serde(..)]`
/// attributes move to the fields.
fn args_of(sig: &mut syn::Signature, errors: &mut Errors) -> Vec<Arg> {
    sig.inputs
        .iter_mut()
        .filter_map(|input| match input {
            FnArg::Receiver(_) => None,
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    let (serde, others): (Vec<Attribute>, Vec<Attribute>) =
                        std::mem::take(&mut typed.attrs)
                            .into_iter()
                            .partition(|a| a.path().is_ident("serde"));
                    let (marks, others): (Vec<Attribute>, Vec<Attribute>) = others
                        .into_iter()
                        .partition(|a| a.path().is_ident("personal") || a.path().is_ident("subject"));
                    typed.attrs = others;
                    let mut arg = field(p.ident.clone(), (*typed.ty).clone(), serde, errors);
                    personal_marks(&marks, &mut arg, errors);
                    Some(arg)
                }
                other => {
                    errors.spanned(
                        other,
                        "an #[event] method's arguments must be plain names (`trick: String`): each becomes a field of the event",
                    );
                    None
                }
            },
        })
        .collect()
}

/// The `#[personal]` and `#[subject]` marks of an argument.
pub(crate) fn personal_marks(marks: &[Attribute], arg: &mut Arg, errors: &mut Errors) {
    for mark in marks {
        if mark.path().is_ident("subject") {
            if let Err(e) = mark.meta.require_path_only() {
                errors.push(e);
            } else if arg.subject {
                errors.spanned(mark, "#[subject] is given twice");
            }
            arg.subject = true;
            continue;
        }
        if arg.personal.is_some() {
            errors.spanned(mark, "#[personal] is given twice");
            continue;
        }
        let mut personal = crate::ast::Personal { forgotten: None };
        if !matches!(mark.meta, syn::Meta::Path(_)) {
            let parsed = mark.parse_nested_meta(|meta| {
                if meta.path.is_ident("forgotten") {
                    personal.forgotten = Some(meta.value()?.parse()?);
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown #[personal] option: the one option is `forgotten = <value>`, \
                         what the field reads as once its subject is forgotten",
                    ))
                }
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }
        if arg.with.is_some() || arg.serialize_with || arg.deserialize_with {
            errors.spanned(
                mark,
                "a #[personal] field is written by annals (sealed with its subject's key): \
                 it cannot also have #[serde(with = ..)], serialize_with or deserialize_with",
            );
        }
        arg.personal = Some(personal);
    }
    if arg.subject && arg.personal.is_some() {
        errors.spanned(
            &arg.ident,
            "the #[subject] names whose data it is and is stored readable: it cannot be #[personal] too",
        );
    }
}

/// One field of an event: `ident: ty`, with its `#[serde(..)]` attributes
/// (`serde`), from a method's argument or an enum variant's field.
pub(crate) fn field(
    ident: syn::Ident,
    ty: Type,
    serde: Vec<Attribute>,
    errors: &mut Errors,
) -> Arg {
    let (mut serialize_with, mut deserialize_with) = (false, false);
    let (mut ref_serde, mut with) = (Vec::new(), None);
    for attr in &serde {
        match split_with(attr) {
            Ok((kept, w)) => {
                if !kept.is_empty() {
                    ref_serde.push(quote::quote!(#[serde(#(#kept),*)]));
                }
                with = with.or(w);
            }
            Err(e) => errors.push(e),
        }
        match serde_with(attr) {
            Ok((ser, de)) => {
                serialize_with |= ser;
                deserialize_with |= de;
            }
            Err(e) => errors.push(e),
        }
    }
    Arg {
        ident,
        ty,
        serde,
        ref_serde,
        with,
        serialize_with,
        deserialize_with,
        personal: None,
        subject: false,
    }
}

fn self_ident(item: &ItemImpl, explicit: bool, errors: &mut Errors) -> Option<syn::Ident> {
    match &item.trait_ {
        Some((None, path, _))
            if explicit
                && path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Apply" || s.ident == "Evolve") => {}
        Some((_, path, _)) if explicit => {
            errors.spanned(
                path,
                "with `events = ...`, #[aggregate] goes on `impl Apply for Dog` (or `impl Evolve for Dog`), which says how the events change the aggregate",
            );
            return None;
        }
        Some((_, path, _)) => {
            errors.spanned(
                path,
                "#[aggregate] goes on the aggregate's own impl block (`impl Dog { ... }`), not on a trait impl \
                 (or, with `events = DogEvent`, on `impl Apply for Dog`)",
            );
            return None;
        }
        // Read on (its markers consumed): the errors then are this one
        // and those of its contents.
        None if explicit => errors.spanned(
            &item.self_ty,
            "with `events = ...`, #[aggregate] goes on `impl Apply for Dog` (or `impl Evolve for Dog`), which says how the events change the aggregate",
        ),
        None => {}
    }
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "an aggregate cannot be generic: its events are stored under fixed topics",
        );
    }
    match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(last) if last.arguments.is_none() => Some(last.ident.clone()),
            _ => {
                errors.spanned(
                    &p.path,
                    "an aggregate cannot be generic: its events are stored under fixed topics",
                );
                None
            }
        },
        other => {
            errors.spanned(other, "#[aggregate] expects `impl TypeName { ... }`");
            None
        }
    }
}

/// Reads the impl block. Returns `None` only when the block cannot be an
/// aggregate's at all (the errors say why).
pub(crate) fn aggregate_impl(
    args: TokenStream,
    mut item: ItemImpl,
    errors: &mut Errors,
) -> Option<AggregateImpl> {
    let options = options(args, errors);
    let self_ident = self_ident(&item, options.events.is_some(), errors)?;
    let evolves = item
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|s| s.ident == "Evolve");
    let agg_name = options
        .name
        .as_ref()
        .map_or_else(|| self_ident.to_string(), LitStr::value);

    let options_aliases: Vec<String> = options.aliases.iter().map(LitStr::value).collect();
    let mut events = Vec::new();
    let mut create_id = None;
    let mut upcasters = Vec::new();
    for (index, impl_item) in item.items.iter_mut().enumerate() {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        if method.sig.ident == "create_id" {
            create_id = Some(create_id_params(&method.sig, errors));
        }
        let (upcasts, others): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(&mut method.attrs)
            .into_iter()
            .partition(|a| is_marker(a, "upcast"));
        method.attrs = others;
        for attr in &upcasts {
            match upcast_attr(attr, &method.sig.ident) {
                Ok(upcaster) => upcasters.push(upcaster),
                Err(e) => errors.push(e),
            }
        }
        let (markers, others): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(&mut method.attrs)
            .into_iter()
            .partition(is_event_attr);
        method.attrs = others;
        let Some(marker) = markers.first() else {
            continue;
        };
        for extra in &markers[1..] {
            errors.spanned(
                extra,
                "a method can be one event only: remove this second #[event]",
            );
        }
        let attr = match event_attr(marker) {
            Ok(attr) => attr,
            Err(e) => {
                errors.push(e);
                EventAttr {
                    name: None,
                    topic: None,
                    discard: false,
                    version: None,
                    aliases: Vec::new(),
                }
            }
        };
        let (name, name_span) = match &attr.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (upper_camel(&method.sig.ident.to_string()), marker.span()),
        };
        let topic = attr
            .topic
            .as_ref()
            .map_or_else(|| format!("{agg_name}.{name}"), LitStr::value);
        let version = attr
            .version
            .as_ref()
            .and_then(|lit| version_of(lit).ok())
            .unwrap_or(1);
        let version_span = attr.version.as_ref().map_or(name_span, syn::LitInt::span);
        let mut aliases: Vec<String> = attr.aliases.iter().map(LitStr::value).collect();
        // A renamed aggregate: its events' topics under the old names.
        aliases.extend(options_aliases.iter().map(|old| format!("{old}.{name}")));
        let args = args_of(&mut method.sig, errors);
        events.push((
            index,
            EventDef {
                kind: kind_of(&method.sig),
                args,
                method: method.clone(),
                name,
                name_span,
                topic,
                discard: attr.discard,
                version,
                version_span,
                aliases,
            },
        ));
    }
    Some(AggregateImpl {
        options,
        self_ident,
        item,
        events,
        create_id,
        upcasters,
        evolves,
    })
}

/// `#[upcast("TrickAdded", from = 1)]` or `#[upcast(snapshot, from = 1)]`.
fn upcast_attr(attr: &Attribute, function: &syn::Ident) -> syn::Result<Upcaster> {
    attr.parse_args_with(|input: ParseStream| {
        let (target, target_span) = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            (UpcastTarget::Event(lit.value()), lit.span())
        } else {
            let ident: syn::Ident = input.parse()?;
            if ident != "snapshot" {
                return Err(syn::Error::new(
                    ident.span(),
                    "#[upcast] takes the event's name (\"TrickAdded\") or `snapshot`",
                ));
            }
            (UpcastTarget::Snapshot, ident.span())
        };
        input.parse::<syn::Token![,]>()?;
        let key: syn::Ident = input.parse()?;
        if key != "from" {
            return Err(syn::Error::new(
                key.span(),
                "expected `from = N`: the version this function upgrades from",
            ));
        }
        input.parse::<syn::Token![=]>()?;
        let lit: syn::LitInt = input.parse()?;
        let from = version_of(&lit)?;
        Ok(Upcaster {
            target,
            target_span,
            from,
            from_span: lit.span(),
            function: function.clone(),
        })
    })
}

fn create_id_params(sig: &syn::Signature, errors: &mut Errors) -> Vec<CreateIdParam> {
    if let Some(receiver) = sig.receiver() {
        errors.spanned(
            receiver,
            "create_id makes the id of a new aggregate from its creation arguments: it takes no `self`",
        );
    }
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(p) => Some(CreateIdParam {
                    ident: p.ident.clone(),
                    by_ref: matches!(&*typed.ty, Type::Reference(_)),
                }),
                other => {
                    errors.spanned(other, "create_id's parameters must be plain names, named like the creation method's arguments");
                    None
                }
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::upper_camel;

    #[test]
    fn method_names_become_event_names() {
        assert_eq!(upper_camel("add_trick"), "AddTrick");
        assert_eq!(upper_camel("register"), "Register");
        assert_eq!(upper_camel("_make__it_so"), "MakeItSo");
    }
}
