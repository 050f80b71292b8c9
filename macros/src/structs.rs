//! `#[aggregate]` on the struct: adds the hidden metadata field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, ItemStruct};

use crate::ast::META_FIELD;
use crate::parse::{self, Errors};

/// Whether the struct derives one of serde's traits (then the metadata
/// field must be skipped by serde).
fn derives_serde(item: &ItemStruct) -> bool {
    item.attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .any(|attr| {
            let mut found = false;
            let _ = attr.parse_nested_meta(|meta| {
                if let Some(last) = meta.path.segments.last() {
                    found |= last.ident == "Serialize" || last.ident == "Deserialize";
                }
                Ok(())
            });
            found
        })
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
    let serde_skip = derives_serde(&item).then(|| quote!(#[serde(skip)]));
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
    quote!(#item #errors)
}
