//! Phase three: generate the event enum, the apply logic, the topic
//! registry and the rewritten methods.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, ImplItem, ItemImpl};

use crate::ast::{AggregateImpl, EventDef, Kind, UpcastTarget, META_FIELD};
use crate::parse::{self, Errors};
use crate::validate;

pub(crate) fn aggregate_impl(args: TokenStream, item: ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let Some(agg) = parse::aggregate_impl(args, item.clone(), &mut errors) else {
        let error = errors.into_error().map(|e| e.to_compile_error());
        return quote!(#item #error);
    };
    validate::aggregate_impl(&agg, &mut errors);
    match errors.into_error() {
        None => generate(&agg),
        Some(error) => stub(agg, error),
    }
}

/// Adds the metadata field to struct literals of the aggregate in a creation
/// method's body, so the user writes `Dog { name, tricks }`.
struct FillMeta<'a> {
    self_ident: &'a Ident,
    field: Ident,
}

impl VisitMut for FillMeta<'_> {
    fn visit_expr_struct_mut(&mut self, expr: &mut syn::ExprStruct) {
        syn::visit_mut::visit_expr_struct_mut(self, expr);
        let path = &expr.path;
        let is_aggregate =
            expr.qself.is_none() && (path.is_ident("Self") || path.is_ident(self.self_ident));
        if is_aggregate && expr.rest.is_none() {
            // Spanned at the literal: an error about the field (the struct
            // lacks #[aggregate]) points there.
            let field = Ident::new(&self.field.to_string(), path.span());
            expr.fields
                .push(syn::parse_quote!(#field: ::core::default::Default::default()));
        }
    }
}

fn fill_meta(block: &mut syn::Block, self_ident: &Ident) {
    FillMeta {
        self_ident,
        field: format_ident!("{}", META_FIELD),
    }
    .visit_block_mut(block);
}

/// A name for generated code that user code can neither see nor shadow
/// (an argument named `__event` stays the user's own).
fn hidden(name: &str) -> Ident {
    Ident::new(name, proc_macro2::Span::mixed_site())
}

fn private(agg: &AggregateImpl) -> TokenStream {
    let krate = &agg.options.krate;
    quote!(#krate::__private)
}

fn event_ident(agg: &AggregateImpl) -> Ident {
    agg.options
        .event
        .clone()
        .unwrap_or_else(|| format_ident!("{}Event", agg.self_ident))
}

fn event_vis(agg: &AggregateImpl) -> TokenStream {
    agg.options
        .event_vis
        .as_ref()
        .map_or_else(|| quote!(pub), |vis| quote!(#vis))
}

/// The lints that must not fire on generated items, whatever the user's
/// crate denies (serde_derive's way).
fn allow_lints() -> TokenStream {
    quote! {
        #[allow(
            unused_qualifications,
            non_camel_case_types,
            non_snake_case,
            unreachable_pub,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            clippy::restriction,
        )]
    }
}

fn id_type(agg: &AggregateImpl) -> TokenStream {
    let p = private(agg);
    agg.options
        .id
        .as_ref()
        .map_or_else(|| quote!(#p::Uuid), |ty| quote!(#ty))
}

fn agg_name(agg: &AggregateImpl) -> String {
    agg.options
        .name
        .as_ref()
        .map_or_else(|| agg.self_ident.to_string(), syn::LitStr::value)
}

fn apply_ident(event: &EventDef) -> Ident {
    format_ident!("__annals_apply_{}", event.method.sig.ident)
}

fn variant(event: &EventDef) -> Ident {
    Ident::new(&event.name, event.name_span)
}

/// What is emitted when the impl block has errors: the user's methods (so
/// calls to them still resolve), the errors, and stubs that keep the rest
/// of the crate from failing because of them.
fn stub(mut agg: AggregateImpl, error: syn::Error) -> TokenStream {
    let p = private(&agg);
    let self_ident = agg.self_ident.clone();
    for (index, event) in &agg.events {
        let mut method = event.method.clone();
        if event.kind == Some(Kind::Creation) {
            fill_meta(&mut method.block, &self_ident);
        }
        agg.item.items[*index] = ImplItem::Fn(method);
    }
    if agg.options.events.is_some() {
        // `impl Apply for Dog`: its literals as `generate` gives them, so
        // that only the real errors show.
        for impl_item in &mut agg.item.items {
            if let ImplItem::Fn(method) = impl_item {
                fill_meta(&mut method.block, &self_ident);
            }
        }
    }
    let item = &agg.item;
    let event_ident = event_ident(&agg);
    let event_vis = event_vis(&agg);
    let id_type = id_type(&agg);
    let name = agg_name(&agg);
    let error = error.to_compile_error();
    let allow = allow_lints();
    // The user's enum, with `events = ...`: only the generated one is
    // stood in for.
    let event_alias = agg.options.events.is_none().then(|| {
        quote! {
            #[doc(hidden)]
            #[allow(dead_code)]
            #allow
            #event_vis type #event_ident = #p::Never;
        }
    });
    let (event_type, create, apply) = match &agg.options.events {
        Some(ty) => (
            quote!(#ty),
            quote!(::core::result::Result::Err(event)),
            quote!(::core::result::Result::Err(event)),
        ),
        None => (
            quote!(#p::Never),
            quote!(match event {}),
            quote!(match event {}),
        ),
    };
    quote! {
        #error
        #item
        #event_alias
        #[automatically_derived]
        #allow
        impl #p::Aggregate for #self_ident {
            type Id = #id_type;
            type Event = #event_type;
            const NAME: &'static str = #name;
        }
        #[automatically_derived]
        #allow
        impl #p::AggregateInternals for #self_ident {
            fn __create(event: #event_type) -> ::core::result::Result<Self, #event_type> {
                #create
            }
            fn __apply(&mut self, event: #event_type) -> ::core::result::Result<(), #event_type> {
                #apply
            }
        }
    }
}

fn generate(agg: &AggregateImpl) -> TokenStream {
    let p = private(agg);
    let self_ident = &agg.self_ident;
    let event_ident = event_ident(agg);
    // The explicit style: the user's enum, applied by `Apply`.
    let explicit = agg.options.events.as_ref();
    let (event_enum, event_impl, event_type) = match explicit {
        Some(ty) => (quote!(), quote!(), quote!(#ty)),
        None => (
            event_enum(agg, &event_ident),
            event_impl(&enum_spec(agg, &event_ident)),
            quote!(#event_ident),
        ),
    };
    let id_type = id_type(agg);
    let name = agg_name(agg);
    let initial_version = agg
        .options
        .initial_version
        .as_ref()
        .map_or_else(|| quote!(1), |v| quote!(#v));
    let state_version = agg
        .options
        .version
        .as_ref()
        .map_or_else(|| quote!(1), |v| quote!(#v));
    let aggregate_aliases = agg.options.aliases.iter();
    let python_topic = agg.options.python.as_ref().map_or_else(
        || quote!(::core::option::Option::None),
        |module| {
            let topic = syn::LitStr::new(&format!("{}:{name}", module.value()), module.span());
            quote!(::core::option::Option::Some(#topic))
        },
    );
    let state_upcasts = agg
        .upcasters
        .iter()
        .filter(|u| u.target == UpcastTarget::Snapshot)
        .map(|u| {
            let from = u.from;
            let function = &u.function;
            quote!(#from => {
                Self::#function(state);
                true
            })
        });

    let mut item = agg.item.clone();
    // `impl Apply for Dog`: its struct literals get the hidden field, as
    // creation methods' do, and its upcasters move to an impl of their
    // own (they are no trait methods).
    let mut moved = Vec::new();
    if explicit.is_some() {
        let upcasters: Vec<&Ident> = agg.upcasters.iter().map(|u| &u.function).collect();
        item.items.retain_mut(|impl_item| {
            let ImplItem::Fn(method) = impl_item else {
                return true;
            };
            fill_meta(&mut method.block, self_ident);
            if upcasters.contains(&&method.sig.ident) {
                moved.push(method.clone());
                return false;
            }
            true
        });
    }
    let mut with_ids = Vec::new();
    let mut applies = Vec::new();
    for (index, event) in &agg.events {
        let rewritten = rewrite(agg, event, &event_ident);
        // The public method stays where the user wrote it.
        item.items[*index] = ImplItem::Verbatim(rewritten.public);
        with_ids.extend(rewritten.with_id);
        applies.push(rewritten.apply);
    }
    let allow = allow_lints();
    // Holds the name `create_id` when this block defines none, so that a
    // `create_id` in another impl block of the type, which the creation
    // methods would not see, is an error (E0592) pointing at it rather than
    // silently ignored.
    let create_id_elsewhere = (agg.create_id.is_none() && explicit.is_none()).then(|| {
        let ident = Ident::new("create_id", proc_macro2::Span::call_site());
        quote! {
            #[doc(hidden)]
            #[allow(dead_code)]
            fn #ident(_: #p::CreateIdGoesInTheAggregateImplBlock) {}
        }
    });

    let creations = agg
        .events
        .iter()
        .filter(|(_, e)| e.kind == Some(Kind::Creation));
    let create_arms = creations.map(|(_, e)| {
        let variant = variant(e);
        let apply = apply_ident(e);
        let fields: Vec<_> = e.args.iter().map(|a| &a.ident).collect();
        quote!(#event_ident::#variant { #(#fields),* } => ::core::result::Result::Ok(Self::#apply(#(#fields),*)),)
    });
    let commands = agg
        .events
        .iter()
        .filter(|(_, e)| e.kind == Some(Kind::Command));
    let apply_arms = commands.map(|(_, e)| {
        let variant = variant(e);
        let apply = apply_ident(e);
        let fields: Vec<_> = e.args.iter().map(|a| &a.ident).collect();
        quote!(#event_ident::#variant { #(#fields),* } => {
            self.#apply(#(#fields),*);
            ::core::result::Result::Ok(())
        })
    });

    let explicit_trait = if agg.evolves {
        quote!(#p::Evolve)
    } else {
        quote!(#p::Apply)
    };
    let meta = format_ident!("{}", META_FIELD);
    // `Evolve`: the next state takes this one's metadata (its literal
    // was given a default one).
    let apply_explicit = if agg.evolves {
        quote! {
            let mut next = <Self as #p::Evolve>::evolve(self, event);
            ::core::mem::swap(&mut next.#meta, &mut self.#meta);
            *self = next;
        }
    } else {
        quote!(<Self as #p::Apply>::apply(self, event);)
    };
    let (create, apply) = if explicit.is_some() {
        (
            quote! {
                if !#p::Event::is_creation(&event) {
                    return ::core::result::Result::Err(event);
                }
                <Self as #explicit_trait>::create(event)
            },
            quote! {
                if #p::Event::is_creation(&event) {
                    return ::core::result::Result::Err(event);
                }
                #apply_explicit
                ::core::result::Result::Ok(())
            },
        )
    } else {
        (
            quote! {
                #[allow(unreachable_patterns)]
                match event {
                    #(#create_arms)*
                    other => ::core::result::Result::Err(other),
                }
            },
            quote! {
                #[allow(unreachable_patterns)]
                match event {
                    #(#apply_arms)*
                    other => ::core::result::Result::Err(other),
                }
            },
        )
    };
    quote! {
        #event_enum
        #event_impl
        #item
        #[automatically_derived]
        #allow
        impl #self_ident {
            #(#with_ids)*
            #create_id_elsewhere
            #(#moved)*
        }
        // The event bodies, the user's code: only the lints that their
        // place in generated code would cause are allowed.
        #[allow(clippy::arbitrary_source_item_ordering, clippy::multiple_inherent_impl)]
        impl #self_ident {
            #(#applies)*
        }
        #[automatically_derived]
        #allow
        impl #p::Aggregate for #self_ident {
            type Id = #id_type;
            type Event = #event_type;
            const NAME: &'static str = #name;
            const INITIAL_VERSION: u64 = #initial_version;
            const STATE_VERSION: u32 = #state_version;
            const ALIASES: &'static [&'static str] = &[#(#aggregate_aliases),*];
            const PYTHON_TOPIC: ::core::option::Option<&'static str> = #python_topic;
        }
        #[automatically_derived]
        #allow
        impl #p::AggregateInternals for #self_ident {
            fn __upcast_state(from: u32, state: &mut #p::json::Value) -> bool {
                let _ = &state;
                match from {
                    #(#state_upcasts)*
                    _ => false,
                }
            }
            fn __create(event: #event_type) -> ::core::result::Result<Self, #event_type> {
                #create
            }
            fn __apply(&mut self, event: #event_type) -> ::core::result::Result<(), #event_type> {
                #apply
            }
        }
    }
}

fn event_enum(agg: &AggregateImpl, event_ident: &Ident) -> TokenStream {
    let self_ident = &agg.self_ident;
    let derives = &agg.options.derives;
    let doc = format!("The events of [`{self_ident}`], one variant per `#[event]` method (generated by `#[aggregate]`).");
    // A narrower visibility than `pub`: the enum is declared `pub` in a
    // hidden module and re-exported with it. `type Event = ..` in the
    // (public) `Aggregate` impl needs a nominally public type, and field
    // types only as visible as the re-export raise no `private_interfaces`.
    let in_module = agg
        .options
        .event_vis
        .as_ref()
        .is_some_and(|vis| !matches!(vis, syn::Visibility::Public(_)));
    let serde_derived = derives.iter().any(|path| {
        path.segments
            .last()
            .is_some_and(|last| last.ident == "Serialize" || last.ident == "Deserialize")
    });
    let variants = agg.events.iter().map(|(_, e)| {
        let variant = variant(e);
        let method = &e.method.sig.ident;
        let doc = format!(
            "Stored as {:?}; applied by [`{self_ident}::{method}`].",
            e.topic
        );
        let fields = e.args.iter().map(|a| {
            let ident = &a.ident;
            let mut ty = a.ty.clone();
            if in_module {
                OneModuleDown.visit_type_mut(&mut ty);
            }
            let doc = format!("Argument `{ident}` of [`{self_ident}::{method}`].");
            // The argument's `#[serde(..)]` also shapes the enum's own serde
            // derives, when `derive(..)` adds them.
            let serde = serde_derived.then_some(&a.serde).into_iter().flatten();
            quote!(#[doc = #doc] #(#serde)* #ident: #ty)
        });
        quote!(#[doc = #doc] #variant { #(#fields),* })
    });
    let allow = allow_lints();
    let enum_item = |vis: TokenStream| {
        quote! {
            #[doc = #doc]
            #(#[derive(#derives)])*
            #allow
            #vis enum #event_ident {
                #(#variants),*
            }
        }
    };
    let vis = event_vis(agg);
    if in_module {
        let module = format_ident!("__annals_event_{}", event_ident);
        let item = enum_item(quote!(pub));
        quote! {
            #[doc(hidden)]
            #allow
            mod #module {
                #[allow(unused_imports)]
                use super::*;
                #item
            }
            #vis use #module::#event_ident;
        }
    } else {
        enum_item(vis)
    }
}

/// Rewrites `self::` and `super::` paths for a module one level down.
struct OneModuleDown;

impl VisitMut for OneModuleDown {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        syn::visit_mut::visit_path_mut(self, path);
        if path.leading_colon.is_some() {
            return;
        }
        let Some(first) = path.segments.first_mut() else {
            return;
        };
        if first.ident == "self" {
            first.ident = Ident::new("super", first.ident.span());
        } else if first.ident == "super" {
            let span = first.ident.span();
            path.segments
                .insert(0, syn::PathSegment::from(Ident::new("super", span)));
        }
    }
}

/// What an event enum's impls (`Event`, `EventInternals`, and for the
/// enum `#[aggregate]` makes, `Clone` and `Debug`) are made from: the
/// events of an impl block's `#[event]` methods, or the variants of a
/// user's enum (`#[derive(Event)]`, `crate::explicit`).
pub(crate) struct EnumSpec<'a> {
    /// `<crate>::__private`.
    pub p: TokenStream,
    pub ident: &'a Ident,
    pub events: Vec<EventSpec<'a>>,
    /// Event upcasters: the event's index, the version upgraded from, the
    /// function (`fn(&mut json::Value)`).
    pub upcasts: Vec<(usize, u32, TokenStream)>,
    /// Whether to implement `Clone` and `Debug` too (the generated enum;
    /// a user's enum derives its own).
    pub clone_debug: bool,
}

/// One event of an [`EnumSpec`].
pub(crate) struct EventSpec<'a> {
    pub variant: Ident,
    pub name: &'a str,
    pub topic: &'a str,
    pub creation: bool,
    pub discard: bool,
    pub version: u32,
    pub aliases: &'a [String],
    pub args: &'a [crate::ast::Arg],
}

/// The spec of the enum that `#[aggregate]` makes from `agg`'s methods.
fn enum_spec<'a>(agg: &'a AggregateImpl, event_ident: &'a Ident) -> EnumSpec<'a> {
    let self_ident = &agg.self_ident;
    let events: Vec<&EventDef> = agg.events.iter().map(|(_, e)| e).collect();
    let mut upcasts = Vec::new();
    for (index, e) in events.iter().enumerate() {
        for u in &agg.upcasters {
            if u.target == UpcastTarget::Event(e.name.clone()) {
                let function = &u.function;
                upcasts.push((index, u.from, quote!(#self_ident::#function)));
            }
        }
    }
    EnumSpec {
        p: private(agg),
        ident: event_ident,
        events: events
            .iter()
            .map(|e| EventSpec {
                variant: variant(e),
                name: &e.name,
                topic: &e.topic,
                creation: e.kind == Some(Kind::Creation),
                discard: e.discard,
                version: e.version,
                aliases: &e.aliases,
                args: &e.args,
            })
            .collect(),
        upcasts,
        clone_debug: true,
    }
}

pub(crate) fn event_impl(spec: &EnumSpec<'_>) -> TokenStream {
    let p = &spec.p;
    let event_ident = spec.ident;
    let serde_path = format!("{}::serde", quote!(#p)).replace(' ', "");
    let timestamp_ser = format!("{}::header_timestamp", quote!(#p)).replace(' ', "");
    let timestamp_de = format!("{}::timestamp::deserialize", quote!(#p)).replace(' ', "");
    let events = &spec.events;
    let topics = events.iter().map(|e| e.topic);
    let names = events.iter().map(|e| &e.name);
    let mut index_arms = Vec::new();
    let mut name_arms = Vec::new();
    let mut creation = Vec::new();
    let mut discarding = Vec::new();
    let mut serialize_arms = Vec::new();
    let mut topic_arms = Vec::new();
    let mut deserialize_arms = Vec::new();
    let mut upcast_arms = Vec::new();
    let mut clone_arms = Vec::new();
    let mut debug_arms = Vec::new();
    let mut personal_arms = Vec::new();
    let mut subject_arms = Vec::new();
    let formatter = hidden("__formatter");
    let (header, serializer, deserializer, variant_param) = (
        hidden("__header"),
        hidden("__serializer"),
        hidden("__deserializer"),
        hidden("__variant"),
    );
    let versions = events.iter().map(|e| e.version);
    for (index, e) in events.iter().enumerate() {
        let variant = &e.variant;
        let name = e.name;
        let topic = e.topic;
        index_arms.push(quote!(Self::#variant { .. } => #index,));
        name_arms.push(quote!(Self::#variant { .. } => #name,));
        if e.creation {
            creation.push(quote!(Self::#variant { .. }));
        }
        if e.discard {
            discarding.push(quote!(Self::#variant { .. }));
        }
        let aliases = e.aliases;
        topic_arms.push(quote!(#topic #(| #aliases)* => ::core::option::Option::Some(#index),));
        for (_, from, function) in spec.upcasts.iter().filter(|(i, ..)| *i == index) {
            upcast_arms.push(quote!((#index, #from) => {
                #function(state);
                true
            }));
        }
        let class_version = (e.version > 1).then(|| {
            let version = e.version;
            (
                quote!(class_version: u32,),
                quote!(class_version: #version,),
            )
        });
        let (class_version_field, class_version_value) = class_version.unzip();
        let fields: Vec<_> = e.args.iter().map(|a| &a.ident).collect();
        // Each field goes through `EventField` (unless its `#[serde(..)]`
        // says how), spanned at its type: a type that is not an event
        // field's is then one error there.
        let field_fn = |a: &crate::ast::Arg, function: &str| {
            let ty = &a.ty;
            let path = format!(
                "<{} as {}::EventField>::{function}",
                quote!(#ty),
                quote!(#p)
            );
            syn::LitStr::new(&path, ty.span())
        };
        let mut wrappers = Vec::new();
        let ref_fields: Vec<TokenStream> = e
            .args
            .iter()
            .map(|a| {
                let ident = &a.ident;
                let ty = &a.ty;
                if a.personal.is_some() {
                    let serde = &a.ref_serde;
                    let wrapper = format_ident!("__annals_seal_{}", ident);
                    wrappers.push(quote_spanned! {ty.span()=>
                        fn #wrapper<__S: #p::serde::Serializer>(
                            value: &&#ty,
                            serializer: __S,
                        ) -> ::core::result::Result<__S::Ok, __S::Error> {
                            #p::personal::serialize(*value, serializer)
                        }
                    });
                    let name = syn::LitStr::new(&wrapper.to_string(), ident.span());
                    return quote!(#(#serde)* #[serde(serialize_with = #name)] #ident: &'__ref #ty);
                }
                if let Some(module) = &a.with {
                    // serde passes this field as `&&T`; `with = "X"` expects `&T`.
                    let serde = &a.ref_serde;
                    let wrapper = format_ident!("__annals_serialize_{}", ident);
                    let module: syn::Path = match module.parse() {
                        Ok(path) => path,
                        Err(e) => return e.to_compile_error(),
                    };
                    wrappers.push(quote! {
                        fn #wrapper<__S: #p::serde::Serializer>(
                            value: &&#ty,
                            serializer: __S,
                        ) -> ::core::result::Result<__S::Ok, __S::Error> {
                            #module::serialize(*value, serializer)
                        }
                    });
                    let name = syn::LitStr::new(&wrapper.to_string(), ident.span());
                    return quote!(#(#serde)* #[serde(serialize_with = #name)] #ident: &'__ref #ty);
                }
                let serde = &a.serde;
                let with = (!a.serialize_with).then(|| {
                    let path = field_fn(a, "__serialize_ref");
                    quote!(#[serde(serialize_with = #path)])
                });
                quote!(#(#serde)* #with #ident: &'__ref #ty)
            })
            .collect();
        let mut openers = Vec::new();
        let owned_fields: Vec<TokenStream> = e
            .args
            .iter()
            .map(|a| {
                let ident = &a.ident;
                let ty = &a.ty;
                let serde = &a.serde;
                if let Some(personal) = &a.personal {
                    let opener = format_ident!("__annals_open_{}", ident);
                    let forgotten = match &personal.forgotten {
                        Some(expr) => quote!(#expr),
                        None => {
                            quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default())
                        }
                    };
                    openers.push(quote_spanned! {ty.span()=>
                        fn #opener<'__de, __D: #p::serde::Deserializer<'__de>>(
                            deserializer: __D,
                        ) -> ::core::result::Result<#ty, __D::Error> {
                            #p::personal::deserialize(deserializer, || -> #ty { #forgotten })
                        }
                    });
                    let name = syn::LitStr::new(&opener.to_string(), ident.span());
                    return quote!(#(#serde)* #[serde(deserialize_with = #name)] #ident: #ty);
                }
                let with = (!a.deserialize_with).then(|| {
                    let path = field_fn(a, "__deserialize");
                    quote!(#[serde(deserialize_with = #path)])
                });
                quote!(#(#serde)* #with #ident: #ty)
            })
            .collect();
        let variant_name = variant.to_string();
        if e.args.iter().any(|a| a.personal.is_some()) {
            personal_arms.push(quote!(Self::#variant { .. } => true,));
        }
        if let Some(subject) = e.args.iter().find(|a| a.subject) {
            let ident = &subject.ident;
            let ty = &subject.ty;
            subject_arms.push(quote_spanned! {ty.span()=>
                Self::#variant { #ident, .. } => ::core::option::Option::Some(::std::string::ToString::to_string(#ident)),
            });
        }
        let clones = e.args.iter().map(|a| {
            let ident = &a.ident;
            let ty = &a.ty;
            quote_spanned!(ty.span()=> #ident: <#ty as #p::EventField>::__clone(#ident))
        });
        clone_arms
            .push(quote!(Self::#variant { #(#fields),* } => Self::#variant { #(#clones),* },));
        let debug_fields = e.args.iter().map(|a| {
            let ident = &a.ident;
            let name = ident.to_string();
            let ty = &a.ty;
            if a.personal.is_some() {
                // Never the plaintext: a `{:?}` goes to logs, panics and
                // error messages, none of which forgetting erases.
                return quote!(.field(#name, &::core::format_args!("<personal>")));
            }
            quote_spanned!(ty.span()=> .field(#name, <#ty as #p::EventField>::__debug(#ident)))
        });
        debug_arms.push(quote! {
            Self::#variant { #(#fields),* } => #formatter.debug_struct(#variant_name)#(#debug_fields)*.finish(),
        });
        serialize_arms.push(quote! {
            Self::#variant { #(#fields),* } => {
                #(#wrappers)*
                #[derive(#p::serde::Serialize)]
                #[serde(crate = #serde_path)]
                struct __State<'__ref> {
                    #[serde(serialize_with = #timestamp_ser)]
                    timestamp: &'__ref #p::Timestamp,
                    #[serde(skip_serializing_if = "::core::option::Option::is_none")]
                    correlation_id: ::core::option::Option<&'__ref #p::Uuid>,
                    #[serde(skip_serializing_if = "::core::option::Option::is_none")]
                    causation_id: ::core::option::Option<&'__ref #p::Uuid>,
                    #class_version_field
                    #(#ref_fields,)*
                }
                #p::serde::Serialize::serialize(
                    &__State {
                        timestamp: &#header.timestamp,
                        correlation_id: #header.correlation_id.as_ref(),
                        causation_id: #header.causation_id.as_ref(),
                        #class_version_value
                        #(#fields),*
                    },
                    #serializer,
                )
            }
        });
        deserialize_arms.push(quote! {
            #index => {
                #(#openers)*
                #[derive(#p::serde::Deserialize)]
                #[serde(crate = #serde_path)]
                struct __State {
                    #[serde(deserialize_with = #timestamp_de)]
                    timestamp: #p::Timestamp,
                    #[serde(default)]
                    correlation_id: ::core::option::Option<#p::Uuid>,
                    #[serde(default)]
                    causation_id: ::core::option::Option<#p::Uuid>,
                    #[serde(default)]
                    class_version: ::core::option::Option<#p::serde::de::IgnoredAny>,
                    #(#owned_fields,)*
                }
                let __State { timestamp, correlation_id, causation_id, class_version, #(#fields),* } =
                    <__State as #p::serde::Deserialize>::deserialize(#deserializer)?;
                ::core::result::Result::Ok((
                    Self::#variant { #(#fields),* },
                    #p::Header { timestamp, correlation_id, causation_id },
                    class_version.is_some(),
                ))
            }
        });
    }
    let is_creation = if creation.is_empty() {
        quote!(false)
    } else {
        quote!(::core::matches!(self, #(#creation)|*))
    };
    let is_discarding = if discarding.is_empty() {
        quote!(false)
    } else {
        quote!(::core::matches!(self, #(#discarding)|*))
    };
    let any_personal = !personal_arms.is_empty();
    let any_subject = !subject_arms.is_empty();
    let allow = allow_lints();
    let clone_debug = spec.clone_debug.then(|| {
        quote! {
            #[automatically_derived]
            #allow
            impl ::core::clone::Clone for #event_ident {
                fn clone(&self) -> Self {
                    match self { #(#clone_arms)* }
                }
            }
            #[automatically_derived]
            #allow
            impl ::core::fmt::Debug for #event_ident {
                fn fmt(&self, #formatter: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    match self { #(#debug_arms)* }
                }
            }
        }
    });
    quote! {
        #clone_debug
        #[automatically_derived]
        #allow
        impl #p::Event for #event_ident {
            const TOPICS: &'static [&'static str] = &[#(#topics),*];
            const NAMES: &'static [&'static str] = &[#(#names),*];
            const VERSIONS: &'static [u32] = &[#(#versions),*];
            fn variant_index(&self) -> usize {
                match self { #(#index_arms)* }
            }
            fn name(&self) -> &'static str {
                match self { #(#name_arms)* }
            }
            fn is_creation(&self) -> bool {
                #is_creation
            }
            fn is_discarding(&self) -> bool {
                #is_discarding
            }
            fn __variant_of(topic: &str) -> ::core::option::Option<usize> {
                match topic {
                    #(#topic_arms)*
                    _ => ::core::option::Option::None,
                }
            }
        }
        #[automatically_derived]
        #allow
        impl #p::EventInternals for #event_ident {
            const __PERSONAL: bool = #any_personal;
            const __NAMED_SUBJECT: bool = #any_subject;
            fn __personal(&self) -> bool {
                #[allow(unreachable_patterns)]
                match self {
                    #(#personal_arms)*
                    _ => false,
                }
            }
            fn __subject(&self) -> ::core::option::Option<::std::string::String> {
                #[allow(unreachable_patterns)]
                match self {
                    #(#subject_arms)*
                    _ => ::core::option::Option::None,
                }
            }
            fn __upcast(variant: usize, from: u32, state: &mut #p::json::Value) -> bool {
                let _ = &state;
                match (variant, from) {
                    #(#upcast_arms)*
                    _ => false,
                }
            }
            fn __serialize<__S: #p::serde::Serializer>(
                &self,
                #header: &#p::Header,
                #serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                match self { #(#serialize_arms)* }
            }
            fn __deserialize<'__de, __D: #p::serde::Deserializer<'__de>>(
                #variant_param: usize,
                #deserializer: __D,
            ) -> ::core::result::Result<(Self, #p::Header, bool), __D::Error> {
                match #variant_param {
                    #(#deserialize_arms)*
                    _ => ::core::result::Result::Err(
                        <__D::Error as #p::serde::de::Error>::custom("no such event variant"),
                    ),
                }
            }
        }
    }
}

/// An event method, rewritten.
struct Rewritten {
    /// The method the user wrote, now recording an event.
    public: TokenStream,
    /// `<method>_with_id`, for creation methods.
    with_id: Option<TokenStream>,
    /// The hidden method that holds the body (run again on replay).
    apply: TokenStream,
}

/// Whether `attr` sets lint levels (and so belongs on the body as well).
fn is_lint_attr(attr: &syn::Attribute) -> bool {
    ["allow", "warn", "deny", "forbid"]
        .iter()
        .any(|name| attr.path().is_ident(name))
}

/// The public method the user wrote, now recording an event, plus the
/// hidden method that holds the body (run again on replay).
fn rewrite(agg: &AggregateImpl, event: &EventDef, event_ident: &Ident) -> Rewritten {
    let p = private(agg);
    let id_type = id_type(agg);
    let method = &event.method;
    let attrs = &method.attrs;
    let vis = &method.vis;
    let sig = &method.sig;
    let ident = &sig.ident;
    let apply = apply_ident(event);
    let variant = variant(event);
    let fields: Vec<_> = event.args.iter().map(|a| &a.ident).collect();
    let clones = event.args.iter().map(|a| {
        let ident = &a.ident;
        let ty = &a.ty;
        quote_spanned!(a.ty.span()=> #ident: <#ty as #p::EventField>::__clone(&#ident))
    });
    let (event_var, id_var, aggregate_var, applying_var) = (
        hidden("__event"),
        hidden("__id"),
        hidden("__aggregate"),
        hidden("__applying"),
    );
    let mut apply_sig = sig.clone();
    apply_sig.ident = apply.clone();
    // The public method only clones and forwards its arguments: `mut` on
    // them matters to the body alone.
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            if let syn::Pat::Ident(p) = &mut *typed.pat {
                p.mutability = None;
            }
        }
    }
    let sig = &sig;
    let mut body = method.block.clone();
    let lint_attrs = attrs.iter().filter(|a| is_lint_attr(a));
    let apply_fn = |body: &syn::Block| {
        quote! {
            #[doc(hidden)]
            #[inline]
            #(#lint_attrs)*
            #apply_sig #body
        }
    };

    match event.kind {
        Some(Kind::Command) => Rewritten {
            public: quote! {
                #(#attrs)*
                #vis #sig {
                    let #event_var = #event_ident::#variant { #(#clones),* };
                    let #applying_var = #p::applying::<Self>();
                    self.#apply(#(#fields),*);
                    #p::__triggered(self, #event_var, #applying_var);
                }
            },
            with_id: None,
            apply: apply_fn(&body),
        },
        Some(Kind::Creation) | None => {
            fill_meta(&mut body, &agg.self_ident);
            let with_id = format_ident!("{}_with_id", ident);
            let id_arg = hidden("id");
            let inputs = &sig.inputs;

            let make_id = match &agg.create_id {
                Some(params) => {
                    let args = params.iter().map(|param| {
                        let ident = &param.ident;
                        if param.by_ref {
                            quote!(&#ident)
                        } else {
                            quote!(::core::clone::Clone::clone(&#ident))
                        }
                    });
                    quote!(::core::convert::Into::into(Self::create_id(#(#args),*)))
                }
                None => quote!(<#id_type as #p::AggregateId>::generate()),
            };
            let with_id_doc =
                format!("Like [`Self::{ident}`], with the new aggregate's id given by the caller.");
            Rewritten {
                public: quote! {
                    #(#attrs)*
                    #vis #sig {
                        let #id_var: #id_type = #make_id;
                        Self::#with_id(#id_var, #(#fields),*)
                    }
                },
                with_id: Some(quote! {
                    #[doc = #with_id_doc]
                    #vis fn #with_id(
                        #id_arg: impl ::core::convert::Into<#id_type>,
                        #inputs
                    ) -> Self {
                        let #event_var = #event_ident::#variant { #(#clones),* };
                        let #applying_var = #p::applying::<Self>();
                        let mut #aggregate_var = Self::#apply(#(#fields),*);
                        #p::__created(&mut #aggregate_var, ::core::convert::Into::into(#id_arg), #event_var, #applying_var);
                        #aggregate_var
                    }
                }),
                apply: apply_fn(&body),
            }
        }
    }
}
