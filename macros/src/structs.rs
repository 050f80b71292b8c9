//! `#[aggregate]` on the struct: adds the hidden metadata field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, ItemStruct};

use crate::ast::META_FIELD;
use crate::parse::{self, Errors};

/// Whether a `derive(..)` list names `Serialize` or `Deserialize` (any
/// path ending so).
fn derives_serde(list: &syn::MetaList) -> bool {
    let mut found = false;
    let _ = list.parse_nested_meta(|meta| {
        found |= meta
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Serialize" || last.ident == "Deserialize");
        Ok(())
    });
    found
}

/// The conditions under which `meta` derives a serde trait: `None` for
/// always, the `cfg_attr` predicate (nested ones joined by `all(..)`)
/// otherwise.
fn serde_conditions(
    meta: &syn::Meta,
    condition: Option<&TokenStream>,
    out: &mut Vec<Option<TokenStream>>,
) {
    let syn::Meta::List(list) = meta else {
        return;
    };
    if list.path.is_ident("derive") {
        if derives_serde(list) {
            out.push(condition.cloned());
        }
    } else if list.path.is_ident("cfg_attr") {
        let parsed = list.parse_args_with(
            syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
        );
        let Ok(parsed) = parsed else {
            return;
        };
        let mut items = parsed.into_iter();
        let Some(predicate) = items.next() else {
            return;
        };
        let predicate = match condition {
            Some(outer) => quote!(all(#outer, #predicate)),
            None => quote!(#predicate),
        };
        for item in items {
            serde_conditions(&item, Some(&predicate), out);
        }
    }
}

/// `#[serde(skip)]` for the hidden field when the struct derives a serde
/// trait: as is, or under the same `cfg_attr` predicate.
fn serde_skip(item: &ItemStruct) -> TokenStream {
    let mut conditions = Vec::new();
    for attr in &item.attrs {
        serde_conditions(&attr.meta, None, &mut conditions);
    }
    if conditions.iter().any(Option::is_none) {
        return quote!(#[serde(skip)]);
    }
    let conditions = conditions.into_iter().flatten();
    quote!(#(#[cfg_attr(#conditions, serde(skip))])*)
}

/// What snapshots and the aggregate cache need of the struct, decided by
/// its traits (`Serialize` and `Deserialize`; `Clone`) through
/// `__private::probe`, however they are implemented.
fn state_impl(item: &ItemStruct, krate: &syn::Path, personal: &Personal) -> TokenStream {
    let p = quote!(#krate::__private);
    let ident = &item.ident;
    let name = ident.to_string();
    let message = format!("{name} cannot be snapshotted: derive Serialize and Deserialize on it");
    let probe = quote!(#p::probe::Probe::<Self>);
    let fallbacks = quote! {
        #[allow(unused_imports)]
        use #p::probe::{NoDuplicate as _, NoSnapshots as _};
    };
    let serde = quote!({ #fallbacks #probe::SNAPSHOTS });
    let serialize = quote!(#fallbacks #probe::serialize_state(self, serializer, #message));
    let deserialize = quote!(#fallbacks #probe::deserialize_state(deserializer, #message));
    let duplicate = quote!(#fallbacks #probe::duplicate(self));
    let field = format_ident!("{}", META_FIELD);
    let any_personal = personal.any;
    let subject = match &personal.subject {
        Some(ident) => {
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&self.#ident)))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #[automatically_derived]
        #[allow(unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery, clippy::restriction)]
        impl #p::AggregateState for #ident {
            fn __meta(&self) -> &#p::Meta<Self>
            where
                Self: #p::Aggregate,
            {
                &self.#field
            }
            fn __meta_mut(&mut self) -> &mut #p::Meta<Self>
            where
                Self: #p::Aggregate,
            {
                &mut self.#field
            }
            const SNAPSHOTS: bool = #serde;
            const __PERSONAL: bool = #any_personal;
            fn __subject(&self) -> ::core::option::Option<::std::string::String> {
                #subject
            }
            fn __serialize_state<S: #p::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                #serialize
            }
            fn __deserialize_state<'de, D: #p::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                #deserialize
            }
            fn __duplicate(&self) -> ::core::option::Option<Self> {
                #duplicate
            }
        }
    }
}

pub(crate) fn expand(args: TokenStream, mut item: ItemStruct) -> TokenStream {
    let mut errors = Errors::default();
    let krate = parse::struct_options(args, &mut errors);
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "an aggregate cannot be generic: its events are stored under fixed topics",
        );
    }
    let serde_skip = serde_skip(&item);
    let (personal, openers) = personal_fields(&mut item, &krate, &mut errors);
    // Without the field, no access to it: only the error about the
    // struct's shape shows.
    let state =
        matches!(item.fields, Fields::Named(_)).then(|| state_impl(&item, &krate, &personal));
    let field = format_ident!("{}", META_FIELD);
    match &mut item.fields {
        Fields::Named(fields) => {
            fields.named.push(syn::parse_quote! {
                #[doc(hidden)]
                #serde_skip
                pub(crate) #field: #krate::__private::Meta<Self>
            });
        }
        _ => errors.spanned(
            &item.ident,
            "an aggregate must be a struct with named fields (`struct Dog { name: String }`)",
        ),
    }
    let errors = errors.into_error().map(|e| e.to_compile_error());
    quote!(#item #(#openers)* #state #errors)
}

/// What the struct's `#[personal]` and `#[subject]` fields ask of its
/// snapshots.
#[derive(Default)]
struct Personal {
    any: bool,
    subject: Option<syn::Ident>,
}

/// Turns each `#[personal]` field into one sealed by serde's
/// `serialize_with` and opened by `deserialize_with` (a function made here
/// when the field says what it reads as once forgotten), and finds the
/// `#[subject]` field.
fn personal_fields(
    item: &mut ItemStruct,
    krate: &syn::Path,
    errors: &mut Errors,
) -> (Personal, Vec<TokenStream>) {
    let mut personal = Personal::default();
    let mut openers = Vec::new();
    let Fields::Named(fields) = &mut item.fields else {
        return (personal, openers);
    };
    let struct_ident = item.ident.clone();
    let p = quote!(#krate::__private);
    for field in &mut fields.named {
        let (marks, others): (Vec<syn::Attribute>, Vec<syn::Attribute>) =
            std::mem::take(&mut field.attrs)
                .into_iter()
                .partition(|a| a.path().is_ident("personal") || a.path().is_ident("subject"));
        field.attrs = others;
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut arg = parse::field(ident.clone(), field.ty.clone(), Vec::new(), errors);
        parse::personal_marks(&marks, &mut arg, errors);
        if arg.subject {
            if personal.subject.is_some() {
                errors.spanned(
                    &ident,
                    "an aggregate has one #[subject]: whose personal data it holds",
                );
            }
            personal.subject = Some(ident.clone());
        }
        let Some(mark) = arg.personal else {
            continue;
        };
        personal.any = true;
        let ty = &field.ty;
        let seal = format!("{}::personal::serialize", quote!(#p)).replace(' ', "");
        let open = match mark.forgotten {
            None => format!("{}::personal::deserialize_default", quote!(#p)).replace(' ', ""),
            Some(expr) => {
                let opener = format_ident!("__annals_open_{}_{}", struct_ident, ident);
                openers.push(quote! {
                    #[doc(hidden)]
                    #[allow(non_snake_case)]
                    fn #opener<'__de, __D: #p::serde::Deserializer<'__de>>(
                        deserializer: __D,
                    ) -> ::core::result::Result<#ty, __D::Error> {
                        #p::personal::deserialize(deserializer, || -> #ty { #expr })
                    }
                });
                opener.to_string()
            }
        };
        field
            .attrs
            .push(syn::parse_quote!(#[serde(serialize_with = #seal, deserialize_with = #open)]));
    }
    (personal, openers)
}
