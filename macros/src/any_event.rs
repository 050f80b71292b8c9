//! `#[derive(AnyEvent)]`: an enum, one variant per aggregate type
//! (`Order(DomainEvent<Order>)`), that decodes any stored event of those
//! types by its topic (`annals::AnyEvent`). One variant may be marked
//! `#[other]`: what a topic of none of them decodes to (a unit variant, or
//! one holding the topic as a `String`).
//!
//! As in the other macros, every mistake is one error spanned at the
//! offending tokens; the derive then emits nothing else. That a variant's
//! type is `DomainEvent<A>` is left to the type system (a trait bound
//! spanned at the type), so aliases of it work.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::parse::Errors;

/// The fallback variant: unit, or holding the topic.
enum Other<'a> {
    Unit(&'a Ident),
    Topic(&'a Ident),
}

/// `#[derive(AnyEvent)]`.
pub(crate) fn derive_any_event(input: DeriveInput) -> TokenStream {
    match any_event(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn any_event(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            ident.span(),
            "#[derive(AnyEvent)] goes on an enum with one variant per aggregate type, \
             `Order(DomainEvent<Order>)`",
        ));
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "an AnyEvent enum cannot be generic",
        ));
    }
    let mut aggregates: Vec<(&Ident, &Type)> = Vec::new();
    let mut other: Option<Other<'_>> = None;
    for variant in &data.variants {
        let marked: Vec<_> = variant
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("other"))
            .collect();
        if let Some(attr) = marked
            .iter()
            .find(|a| !matches!(a.meta, syn::Meta::Path(_)))
        {
            errors.push(syn::Error::new_spanned(
                attr,
                "#[other] takes no arguments: it marks the variant of the other topics",
            ));
            continue;
        }
        if let Some(attr) = marked.first() {
            if marked.len() > 1 || other.is_some() {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "#[other] marks one variant: the one other topics decode to",
                ));
                continue;
            }
            match &variant.fields {
                Fields::Unit => other = Some(Other::Unit(&variant.ident)),
                Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                    // The topic: a type error at the field if it is not a String.
                    other = Some(Other::Topic(&variant.ident));
                }
                _ => errors.push(syn::Error::new(
                    variant.span(),
                    format!(
                        "the #[other] variant is a unit, `{0}`, or holds the topic, `{0}(String)`",
                        variant.ident
                    ),
                )),
            }
            continue;
        }
        match &variant.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                aggregates.push((&variant.ident, &fields.unnamed[0].ty));
            }
            _ => errors.push(syn::Error::new(
                variant.span(),
                format!(
                    "each variant holds one aggregate type's events: `{}(DomainEvent<A>)`, \
                     or is marked #[other]",
                    variant.ident
                ),
            )),
        }
    }
    if aggregates.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            ident.span(),
            "an AnyEvent enum needs a variant per aggregate type, `Order(DomainEvent<Order>)`",
        ));
    }
    errors.finish()?;
    let private = quote!(::annals::__private::any);
    let of = |ty: &Type| quote_spanned!(ty.span()=> <#ty as #private::OfAggregate>::Aggregate);
    let decodes = aggregates.iter().map(|(variant, ty)| {
        let aggregate = of(ty);
        // At the variant's type, as `of`: one error there for a type that
        // is not `DomainEvent<A>` (rustc merges identical ones).
        let from = quote_spanned!(ty.span()=> <#ty as #private::OfAggregate>::from_events);
        quote! {
            if #private::is_of::<#aggregate>(topic) {
                return decoder
                    .decode::<#aggregate>()
                    .map(#from)
                    .map(Self::#variant);
            }
        }
    });
    let fallback = match other {
        None => {
            quote!(::std::result::Result::Err(#private::unknown(topic, <Self as #private::AnyEvent>::NAME)))
        }
        Some(Other::Unit(variant)) => quote!(::std::result::Result::Ok(Self::#variant)),
        Some(Other::Topic(variant)) => {
            quote!(::std::result::Result::Ok(Self::#variant(::std::string::String::from(topic))))
        }
    };
    let names = aggregates.iter().map(|(_, ty)| {
        let aggregate = of(ty);
        quote!(#private::name_of::<#aggregate>())
    });
    let name = ident.to_string();
    let duplicate = format!("two variants of {ident} hold the events of one aggregate type");
    Ok(quote! {
        impl #private::AnyEvent for #ident {
            const NAME: &'static str = #name;
            fn __decode<D: #private::Decoder>(topic: &str, decoder: D) -> #private::Result<Self> {
                #(#decodes)*
                #fallback
            }
        }
        const _: () = ::std::assert!(#private::distinct(&[#(#names),*]), #duplicate);
    })
}
