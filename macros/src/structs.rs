//! `#[aggregate]` on the struct: adds the hidden metadata field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, ItemStruct};

use crate::ast::META_FIELD;
use crate::parse::{self, Errors};

/// Whether the struct derives `name` (`Serialize`, `serde::Serialize`, ...).
fn derives(item: &ItemStruct, name: &str) -> bool {
    item.attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|attr| {
            let mut found = false;
            let _ = attr.parse_nested_meta(|meta| {
                found |= meta
                    .path
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == name);
                Ok(())
            });
            found
        })
}

/// What snapshots and the aggregate cache need of the struct: its serde
/// state (when it derives `Serialize` and `Deserialize`) and copies (when
/// it derives `Clone`).
fn state_impl(item: &ItemStruct, krate: &syn::Path) -> TokenStream {
    let p = quote!(#krate::__private);
    let ident = &item.ident;
    let name = ident.to_string();
    let serde = derives(item, "Serialize") && derives(item, "Deserialize");
    let (serialize, deserialize) = if serde {
        (
            quote!(<Self as #p::serde::Serialize>::serialize(self, serializer)),
            quote!(<Self as #p::serde::Deserialize<'de>>::deserialize(deserializer)),
        )
    } else {
        let message =
            format!("{name} cannot be snapshotted: derive Serialize and Deserialize on it");
        (
            quote! {
                let _ = serializer;
                ::core::result::Result::Err(<S::Error as #p::serde::ser::Error>::custom(#message))
            },
            quote! {
                let _ = deserializer;
                ::core::result::Result::Err(<D::Error as #p::serde::de::Error>::custom(#message))
            },
        )
    };
    let duplicate = if derives(item, "Clone") {
        quote!(::core::option::Option::Some(::core::clone::Clone::clone(
            self
        )))
    } else {
        quote!(::core::option::Option::None)
    };
    let field = format_ident!("{}", META_FIELD);
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

pub fn expand(args: TokenStream, mut item: ItemStruct) -> TokenStream {
    let mut errors = Errors::default();
    let krate = parse::struct_options(args, &mut errors);
    if !item.generics.params.is_empty() {
        errors.spanned(
            &item.generics,
            "an aggregate cannot be generic: its events are stored under fixed topics",
        );
    }
    let serde_skip = (derives(&item, "Serialize") || derives(&item, "Deserialize"))
        .then(|| quote!(#[serde(skip)]));
    // Without the field, no access to it: only the error about the
    // struct's shape shows.
    let state = matches!(item.fields, Fields::Named(_)).then(|| state_impl(&item, &krate));
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
    quote!(#item #state #errors)
}
