//! `#[derive(Event)]`: a user's enum as an aggregate's events (the
//! explicit style), with what `#[event]` methods give the enum that
//! `#[aggregate]` makes: topics, names, versions and upcasters, the stored
//! form (each variant's fields, as an `#[event]` method's arguments are
//! stored), Python's names. The aggregate names the enum,
//! `#[aggregate(events = DogEvent)]` on its impl block, and applies the
//! events itself (`annals::Apply`).
//!
//! Options, `#[annals(..)]`: on the enum, `aggregate = "Dog"` (the
//! topics' prefix; the enum's name without its `Event` suffix by
//! default); on a variant, `create` (a creation event), `discard`,
//! `name = "..."`, `topic = "..."`, `version = N`, `aliases = [..]` and
//! `upcast(from = N, with = path)`, one per version upgraded.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::ast::Arg;
use crate::expand::{event_impl, EnumSpec, EventSpec};
use crate::parse::{self, Errors};
use crate::validate::{fields, names_and_topics, Naming};

/// What `#[annals(..)]` says of one variant.
#[derive(Default)]
struct VariantOptions {
    create: bool,
    discard: bool,
    name: Option<LitStr>,
    topic: Option<LitStr>,
    version: Option<syn::LitInt>,
    aliases: Vec<LitStr>,
    /// (from, function), each with the `from`'s span.
    upcasts: Vec<(syn::LitInt, syn::Path)>,
}

/// One variant, read.
struct Variant {
    ident: syn::Ident,
    name: String,
    topic: String,
    version: u32,
    aliases: Vec<String>,
    create: bool,
    discard: bool,
    args: Vec<Arg>,
}

/// `#[derive(Event)]`.
pub(crate) fn derive_event(input: DeriveInput) -> TokenStream {
    match event(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

/// `aggregate = "..."` on the enum.
fn enum_options(input: &DeriveInput, errors: &mut Errors) -> Option<LitStr> {
    let mut aggregate = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("annals")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("aggregate") {
                aggregate = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown option of #[annals] on an event enum; expected `aggregate = \"Name\"` \
                     (the others go on its variants)",
                ))
            }
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    aggregate
}

fn variant_options(variant: &syn::Variant, errors: &mut Errors) -> VariantOptions {
    let mut options = VariantOptions::default();
    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("annals")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("create") {
                options.create = true;
            } else if meta.path.is_ident("discard") {
                options.discard = true;
            } else if meta.path.is_ident("name") {
                options.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("topic") {
                options.topic = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("version") {
                let lit: syn::LitInt = meta.value()?.parse()?;
                parse::version_of(&lit)?;
                options.version = Some(lit);
            } else if meta.path.is_ident("aliases") {
                options.aliases = parse::string_list(meta.value()?)?;
            } else if meta.path.is_ident("upcast") {
                let (mut from, mut with) = (None, None);
                meta.parse_nested_meta(|inner| {
                    if inner.path.is_ident("from") {
                        let lit: syn::LitInt = inner.value()?.parse()?;
                        parse::version_of(&lit)?;
                        from = Some(lit);
                    } else if inner.path.is_ident("with") {
                        with = Some(inner.value()?.parse::<syn::Path>()?);
                    } else {
                        return Err(inner.error(
                            "unknown option of upcast; expected `from = N` and `with = path::to::function`",
                        ));
                    }
                    Ok(())
                })?;
                match (from, with) {
                    (Some(from), Some(with)) => options.upcasts.push((from, with)),
                    _ => {
                        return Err(meta.error(
                            "upcast needs `from = N` (the stored version it upgrades) and `with = function` (a `fn(&mut annals::json::Value)`)",
                        ))
                    }
                }
            } else {
                return Err(meta.error(
                    "unknown option of #[annals] on an event; expected `create`, `discard`, `name = \"...\"`, \
                     `topic = \"...\"`, `version = N`, `aliases = [\"...\"]` or `upcast(from = N, with = function)`",
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    options
}

fn event(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            ident.span(),
            "#[derive(Event)] goes on an enum, one variant per event of an aggregate",
        ));
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.spanned(
            &input.generics,
            "an event enum cannot be generic: its events are stored under fixed topics",
        );
    }
    let prefix = match enum_options(input, &mut errors) {
        Some(name) => name.value(),
        None => match ident.to_string().strip_suffix("Event") {
            Some(prefix) if !prefix.is_empty() => prefix.to_owned(),
            _ => {
                errors.at(
                    ident.span(),
                    format!(
                        "name the aggregate whose events these are: #[annals(aggregate = \"Name\")] \
                         (the enum's name gives it only when it is `NameEvent`, and `{ident}` is not)"
                    ),
                );
                String::new()
            }
        },
    };
    let mut variants = Vec::new();
    let mut upcasts = Vec::new();
    for (index, variant) in data.variants.iter().enumerate() {
        let options = variant_options(variant, &mut errors);
        let args = match &variant.fields {
            Fields::Named(named) => named
                .named
                .iter()
                .map(|f| {
                    let serde = f
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("serde"))
                        .cloned()
                        .collect();
                    let ident = f.ident.clone().expect("a named field");
                    let mut arg = parse::field(ident, f.ty.clone(), serde, &mut errors);
                    let marks: Vec<_> = f
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("personal") || a.path().is_ident("subject"))
                        .cloned()
                        .collect();
                    parse::personal_marks(&marks, &mut arg, &mut errors);
                    arg
                })
                .collect(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(_) => {
                errors.spanned(
                    &variant.ident,
                    format!(
                        "an event's fields are named, as they are stored: `{} {{ field: Type }}`",
                        variant.ident
                    ),
                );
                Vec::new()
            }
        };
        fields(&args, &mut errors);
        let name = options
            .name
            .as_ref()
            .map_or_else(|| variant.ident.to_string(), LitStr::value);
        let version = options
            .version
            .as_ref()
            .and_then(|v| parse::version_of(v).ok())
            .unwrap_or(1);
        for (from, with) in &options.upcasts {
            let value = parse::version_of(from).unwrap_or(0);
            if value >= version {
                errors.at(
                    from.span(),
                    format!(
                        "{name} is at version {version}: an upcaster upgrades a version below it"
                    ),
                );
            }
            upcasts.push((index, value, quote!(#with)));
        }
        for v in 1..version {
            if !options
                .upcasts
                .iter()
                .any(|(from, _)| parse::version_of(from).ok() == Some(v))
            {
                errors.spanned(
                    &variant.ident,
                    format!(
                        "{name} is at version {version}, and nothing upgrades version {v}: add #[annals(upcast(from = {v}, with = function))]"
                    ),
                );
            }
        }
        variants.push(Variant {
            ident: variant.ident.clone(),
            topic: options
                .topic
                .as_ref()
                .map_or_else(|| format!("{prefix}.{name}"), LitStr::value),
            name,
            version,
            aliases: options.aliases.iter().map(LitStr::value).collect(),
            create: options.create,
            discard: options.discard,
            args,
        });
    }
    if !variants.iter().any(|v| v.create) && !data.variants.is_empty() {
        errors.at(
            ident.span(),
            "no event creates the aggregate: mark its creation events #[annals(create)]",
        );
    }
    if data.variants.is_empty() {
        errors.at(ident.span(), "an event enum needs at least one event");
    }
    let namings: Vec<Naming<'_>> = variants
        .iter()
        .map(|v| Naming {
            name: &v.name,
            topic: &v.topic,
            aliases: &v.aliases,
            span: v.ident.span(),
            by: format!("`{}`", v.ident),
        })
        .collect();
    names_and_topics(&namings, &mut errors);
    errors.finish()?;
    let spec = EnumSpec {
        p: quote!(::annals::__private),
        ident,
        events: variants
            .iter()
            .map(|v| EventSpec {
                variant: v.ident.clone(),
                name: &v.name,
                topic: &v.topic,
                creation: v.create,
                discard: v.discard,
                version: v.version,
                aliases: &v.aliases,
                args: &v.args,
            })
            .collect(),
        upcasts,
        clone_debug: false,
    };
    Ok(event_impl(&spec))
}
