//! The `#[aggregate]`, `#[event]` and `#[upcast]` attributes of annals. Use
//! them through the `annals` crate (`use annals::prelude::*;`), which
//! re-exports them and documents what each accepts, with examples that run
//! (<https://docs.rs/annals/latest/annals/attr.aggregate.html>): they cannot
//! run here, since this crate cannot depend on `annals`.
//!
//! `#[aggregate]` on the impl block does the work: it sees every method at
//! once, reads the inert `#[event(...)]` markers and, in three phases
//! (`parse`, `validate`, `expand`), builds one event enum, the apply logic
//! and the topic registry. `#[aggregate]` on the struct adds the hidden
//! metadata field. Errors are accumulated, spanned at the offending tokens,
//! and emitted together with stub impls so that only the real errors show.

mod any_event;
mod ast;
mod dcb;
mod expand;
mod explicit;
mod parse;
mod structs;
mod validate;

use proc_macro::TokenStream;

/// `annals-macros`'s `#[aggregate]`: on a struct it adds the aggregate's
/// metadata, on its impl block it turns `#[event]` methods into events.
/// Defined in `annals-macros`, re-exported as `annals::aggregate`: what it
/// accepts is documented there, with examples that run.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = match syn::parse::<syn::Item>(input) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error().into(),
    };
    match item {
        syn::Item::Struct(item) => structs::expand(args, item),
        syn::Item::Impl(item) => expand::aggregate_impl(args, item),
        other => {
            let error = syn::Error::new_spanned(
                &other,
                "#[aggregate] goes on a struct with named fields and on its impl block",
            )
            .to_compile_error();
            quote::quote!(#other #error)
        }
    }
    .into()
}

/// `annals-macros`'s `#[event]`: marks a method of an `#[aggregate]` impl
/// block as an event, `#[event("TrickAdded")]`; alone it is an error.
/// Defined in `annals-macros`, re-exported as `annals::event`: what it
/// accepts is documented there, with examples that run.
#[proc_macro_attribute]
pub fn event(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_aggregate("#[event] marks a method", input)
}

/// A marker read by `#[aggregate]` found outside such an impl block: the
/// item, unchanged, and an error saying where the marker belongs.
fn outside_aggregate(what: &str, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        format!(
            "{what} of an impl block that has #[aggregate]; add #[aggregate] to the impl block"
        ),
    )
    .to_compile_error();
    quote::quote!(#error #input).into()
}

/// `annals-macros`'s `#[upcast]`: marks an upcaster of an `#[aggregate]`
/// impl block, `#[upcast("TrickAdded", from = 1)]` or
/// `#[upcast(snapshot, from = 1)]` on `fn(state: &mut annals::json::Value)`;
/// alone it is an error. Defined in `annals-macros`, re-exported as
/// `annals::upcast`: what it accepts is documented there, with examples
/// that run.
#[proc_macro_attribute]
pub fn upcast(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_aggregate("#[upcast] marks a function", input)
}

/// `annals-macros`'s `#[derive(Tagged)]`: a struct with named fields as a
/// DCB event, its type from `#[dcb(type = "...")]` (the struct's name by
/// default) and its tags from the fields marked `#[tag]` or
/// `#[tag(prefix = "course-")]`. Re-exported as `annals::dcb::Tagged`:
/// what it accepts is documented there, with examples that run.
#[proc_macro_derive(Tagged, attributes(dcb, tag))]
pub fn derive_tagged(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => dcb::derive_tagged(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `annals-macros`'s `#[derive(DcbEvents)]`: an enum of `Tagged` structs
/// (one-field tuple variants) as the event types a perspective reads.
/// Re-exported as `annals::dcb::DcbEvents`: what it accepts is documented
/// there, with examples that run.
#[proc_macro_derive(DcbEvents, attributes(dcb))]
pub fn derive_dcb_events(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => dcb::derive_events(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `annals-macros`'s `#[derive(AnyEvent)]`: an enum, one variant per
/// aggregate type (`Order(DomainEvent<Order>)`), that decodes any stored
/// event of those types by its topic; `#[other]` marks the variant of
/// other topics. Re-exported as `annals::AnyEvent`: what it accepts is
/// documented there, with examples that run.
#[proc_macro_derive(AnyEvent, attributes(other))]
pub fn derive_any_event(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => any_event::derive_any_event(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `annals-macros`'s `#[derive(Event)]`: a user's enum as an aggregate's
/// events (the explicit style), named by `#[aggregate(events = ...)]`;
/// options in `#[annals(..)]`. Re-exported as `annals::Event`: what it
/// accepts is documented there, with examples that run.
#[proc_macro_derive(Event, attributes(annals, serde, personal, subject))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => explicit::derive_event(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}
