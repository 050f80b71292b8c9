//! `#[derive(Tagged)]` and `#[derive(DcbEvents)]`: the domain side of
//! dynamic consistency boundaries (`annals::dcb`).
//!
//! `Tagged` goes on a struct with named fields, one struct per event type:
//! `#[dcb(type = "...")]` names its stored type (the struct's name when
//! absent) and `#[tag]` / `#[tag(prefix = "...")]` on a field makes one of
//! its tags. `DcbEvents` goes on an enum of one-field tuple variants, each
//! a `Tagged` struct: the event types a perspective reads, so that its
//! query is made of exactly the types it can decode.
//!
//! As in the aggregate macros, every mistake is one error spanned at the
//! offending tokens; the derive then emits nothing else.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::parse::Errors;

/// `#[dcb(type = "...")]` on the item, if there is one.
fn dcb_type(attrs: &[syn::Attribute], errors: &mut Errors) -> Option<LitStr> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("dcb")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("type") {
                let name: LitStr = meta.value()?.parse()?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(
                        name.span(),
                        "an event type cannot be empty",
                    ));
                }
                if found.is_some() {
                    return Err(meta.error("the event type is given twice"));
                }
                found = Some(name);
                Ok(())
            } else {
                Err(meta.error("unknown option of #[dcb]: expected `type = \"...\"`"))
            }
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    found
}

/// `#[derive(Tagged)]`.
pub(crate) fn derive_tagged(input: DeriveInput) -> TokenStream {
    match tagged(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn tagged(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let ident = &input.ident;
    let mut errors = Errors::default();
    let fields =
        match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(&named.named),
                other => {
                    errors.push(syn::Error::new(
                    other.span(),
                    "#[derive(Tagged)] needs named fields: an event's data is a map of its fields",
                ));
                    None
                }
            },
            _ => return Err(syn::Error::new(
                ident.span(),
                "#[derive(Tagged)] goes on a struct with named fields, one struct per event type \
                 (an enum of them derives DcbEvents)",
            )),
        };
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "a tagged event cannot be generic: its stored type is one name",
        ));
    }
    let type_name = dcb_type(&input.attrs, &mut errors)
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let mut tags = Vec::new();
    for field in fields.into_iter().flatten() {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("tag")) {
            let mut prefix = LitStr::new("", attr.span());
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                let result = attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("prefix") {
                        prefix = meta.value()?.parse()?;
                        Ok(())
                    } else {
                        Err(meta.error("unknown option of #[tag]: expected `prefix = \"...\"`"))
                    }
                });
                if let Err(e) = result {
                    errors.push(e);
                    continue;
                }
            }
            let name = field.ident.as_ref().expect("named field");
            let ty = &field.ty;
            // The bound, spanned at the field's type: a field that cannot
            // be written as a tag is an error there.
            let display = quote_spanned!(ty.span()=> ::annals::__private::dcb::tag::<#ty>);
            tags.push(quote!(#display(#prefix, &self.#name)));
        }
    }
    errors.finish()?;
    let private = quote!(::annals::__private::dcb);
    Ok(quote! {
        impl #private::Tagged for #ident {
            const TYPE: &'static str = #type_name;
            fn tags(&self) -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![#(#tags),*]
            }
        }
        impl #private::DcbEvents for #ident {
            const TYPES: &'static [&'static str] = &[#type_name];
            fn decode(event: &#private::DcbSequencedEvent) -> #private::Result<Self> {
                #private::decode::<Self>(event)
            }
        }
    })
}

/// `#[derive(DcbEvents)]`.
pub(crate) fn derive_events(input: DeriveInput) -> TokenStream {
    match events(&input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn events(input: &DeriveInput) -> Result<TokenStream, syn::Error> {
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            ident.span(),
            "#[derive(DcbEvents)] goes on an enum whose variants each hold one #[derive(Tagged)] \
             struct; a struct derives Tagged",
        ));
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new(
            input.generics.span(),
            "an enum of DCB events cannot be generic",
        ));
    }
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            ident.span(),
            "an enum of DCB events needs at least one variant: it is what a perspective reads",
        ));
    }
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("dcb")) {
        errors.push(syn::Error::new_spanned(
            attr,
            "#[dcb(type = ...)] names one event type: put it on the Tagged struct, not the enum",
        ));
    }
    let mut variants = Vec::new();
    for variant in &data.variants {
        match &variant.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                variants.push((&variant.ident, &fields.unnamed[0].ty));
            }
            _ => errors.push(syn::Error::new(
                variant.span(),
                format!(
                    "each variant holds one #[derive(Tagged)] struct: `{}(SomeEvent)`",
                    variant.ident
                ),
            )),
        }
    }
    errors.finish()?;
    let private = quote!(::annals::__private::dcb);
    let types = variants
        .iter()
        .map(|(_, ty)| quote_spanned!(ty.span()=> <#ty as #private::Tagged>::TYPE));
    let decodes = variants.iter().map(|(variant, ty)| {
        quote! {
            if event.event.type_ == <#ty as #private::Tagged>::TYPE {
                return #private::decode::<#ty>(event).map(Self::#variant);
            }
        }
    });
    let froms = variants.iter().map(|(variant, ty)| {
        quote! {
            impl ::std::convert::From<#ty> for #ident {
                fn from(event: #ty) -> Self {
                    Self::#variant(event)
                }
            }
        }
    });
    // Through `<T as Tagged>` at the variant's type: a type that is not
    // Tagged is one error there (rustc merges the identical ones).
    let news = variants.iter().map(|(variant, ty)| {
        let parts = quote_spanned! {ty.span()=>
            #private::encode_parts(
                <#ty as #private::Tagged>::TYPE,
                <#ty as #private::Tagged>::tags(&event),
                &event,
            )
        };
        quote!(#ident::#variant(event) => #parts)
    });
    let duplicate = format!("two variants of {ident} hold events of the same type");
    let impls = quote! {
        impl #private::DcbEvents for #ident {
            const TYPES: &'static [&'static str] = &[#(#types),*];
            fn decode(event: &#private::DcbSequencedEvent) -> #private::Result<Self> {
                #(#decodes)*
                ::std::result::Result::Err(#private::unexpected(event, <Self as #private::DcbEvents>::TYPES))
            }
        }
        impl ::std::convert::From<#ident> for #private::NewEvent {
            fn from(event: #ident) -> Self {
                match event {
                    #(#news,)*
                }
            }
        }
        #(#froms)*
    };
    let distinct = quote_spanned! {ident.span()=>
        const _: () = ::std::assert!(
            #private::distinct(<#ident as #private::DcbEvents>::TYPES),
            #duplicate
        );
    };
    Ok(quote! {
        #impls
        #distinct
    })
}
