//! Procedural macros of `cpython_api`, the alternative to Argument Clinic:
//!
//! * `#[pyfunction]` on a Rust function keeps the function and adds its
//!   METH_FASTCALL | METH_KEYWORDS wrapper, which parses the arguments by the
//!   parameter names and types (`cpython_api::FromPyArg`) and converts the
//!   result (`cpython_api::IntoPyObject`, or a `PyResult` of one), plus the
//!   `PyMethodDef` (`__pyfunction_<name>`) with the doc comment as docstring.
//!   Trailing `Option<T>` parameters are optional.
//! * `pymodule!(name, "doc", [f, g, ...])` defines the module (multi-phase
//!   initialisation) and its `PyInit_<name>`.
//!
//! The generated code names `::cpython_api` only.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Attribute, Ident, LitStr, Token, Type, Visibility};

/// The part of a function item the wrapper needs; the body is kept as tokens.
struct Function {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    params: Vec<(Ident, Type)>,
    output: syn::ReturnType,
    body: TokenStream2,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        input.parse::<Token![fn]>()?;
        let name: Ident = input.parse()?;
        if input.peek(Token![<]) {
            return Err(input.error("#[pyfunction] functions cannot be generic"));
        }
        let content;
        parenthesized!(content in input);
        let mut params = Vec::new();
        while !content.is_empty() {
            let pname: Ident = content.parse()?;
            content.parse::<Token![:]>()?;
            let ty: Type = content.parse()?;
            params.push((pname, ty));
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        let output: syn::ReturnType = input.parse()?;
        if !input.peek(syn::token::Brace) {
            return Err(input.error("expected the function body"));
        }
        let body: TokenStream2 = input.parse()?;
        Ok(Function { attrs, vis, name, params, output, body })
    }
}

fn doc_string(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                let v = s.value();
                lines.push(v.strip_prefix(' ').unwrap_or(&v).to_string());
            }
        }
    }
    lines.join("\n")
}

fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

fn returns_result(output: &syn::ReturnType) -> bool {
    match output {
        syn::ReturnType::Type(_, ty) => matches!(&**ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "PyResult" || s.ident == "Result")),
        syn::ReturnType::Default => false,
    }
}

#[proc_macro_attribute]
pub fn pyfunction(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[pyfunction] takes no arguments").to_compile_error().into();
    }
    let f = match syn::parse::<Function>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let Function { attrs, vis, name, params, output, body } = f;
    let name_str = name.to_string();
    let wrapper = format_ident!("__pywrap_{}", name);
    let def = format_ident!("__pyfunction_{}", name);
    let n = params.len();
    // Parameters after the last non-optional one may be left out.
    let required = params.iter().rposition(|(_, ty)| !is_option(ty)).map_or(0, |i| i + 1);
    let names: Vec<String> = params.iter().map(|(p, _)| p.to_string()).collect();
    let holders: Vec<Ident> = (0..n).map(|i| format_ident!("__holder{}", i)).collect();
    let converts = params.iter().enumerate().map(|(i, (p, ty))| {
        let h = &holders[i];
        let pstr = p.to_string();
        quote! {
            let #p: #ty = <#ty as ::cpython_api::FromPyArg<'_>>::from_arg(__slots[#i], &mut #h, #name_str, #pstr)?;
        }
    });
    let arg_names = params.iter().map(|(p, _)| p);
    let call = if returns_result(&output) {
        quote! { ::cpython_api::IntoPyObject::into_py(#name(#(#arg_names),*)?) }
    } else {
        quote! { ::cpython_api::IntoPyObject::into_py(#name(#(#arg_names),*)) }
    };
    let sig_params = params.iter().map(|(p, ty)| quote! { #p: #ty });
    let doc = format!("{}\0", doc_string(&attrs));
    let name_nul = format!("{name_str}\0");
    quote! {
        #(#attrs)*
        #vis fn #name(#(#sig_params),*) #output #body

        #[doc(hidden)]
        #[allow(non_snake_case, unused_mut)]
        unsafe extern "C" fn #wrapper(
            _module: *mut ::cpython_api::ffi::PyObject,
            args: *const *mut ::cpython_api::ffi::PyObject,
            nargs: ::cpython_api::ffi::Py_ssize_t,
            kwnames: *mut ::cpython_api::ffi::PyObject,
        ) -> *mut ::cpython_api::ffi::PyObject {
            ::cpython_api::trampoline(|| {
                let mut __slots = [::core::ptr::null_mut(); #n];
                ::cpython_api::parse_args(#name_str, &[#(#names),*], #required, args, nargs, kwnames, &mut __slots)?;
                #(let mut #holders = ::core::default::Default::default();)*
                #(#converts)*
                #call
            })
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #vis const #def: ::cpython_api::MethodDef = ::cpython_api::MethodDef::fastcall(#name_nul, #wrapper, #doc);
    }
    .into()
}

struct Module {
    name: Ident,
    doc: LitStr,
    functions: Punctuated<Ident, Token![,]>,
}

impl Parse for Module {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = input.parse()?;
        input.parse::<Token![,]>()?;
        let doc = input.parse()?;
        input.parse::<Token![,]>()?;
        let content;
        bracketed!(content in input);
        let functions = content.parse_terminated(Ident::parse, Token![,])?;
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        Ok(Module { name, doc, functions })
    }
}

#[proc_macro]
pub fn pymodule(input: TokenStream) -> TokenStream {
    let Module { name, doc, functions } = match syn::parse::<Module>(input) {
        Ok(m) => m,
        Err(e) => return e.to_compile_error().into(),
    };
    let init = format_ident!("PyInit_{}", name);
    let name_nul = format!("{name}\0");
    let doc_nul = format!("{}\0", doc.value());
    let defs = functions.iter().map(|f| format_ident!("__pyfunction_{}", f));
    let count = functions.len() + 1;
    quote! {
        #[doc(hidden)]
        static __PYMODULE_METHODS: [::cpython_api::MethodDef; #count] = [#(#defs,)* ::cpython_api::MethodDef::END];
        #[doc(hidden)]
        static __PYMODULE_SLOTS: ::cpython_api::Slots = ::cpython_api::Slots::FOR_THIS_VERSION;
        #[doc(hidden)]
        static __PYMODULE_DEF: ::cpython_api::ModuleDef =
            ::cpython_api::ModuleDef::new(#name_nul, #doc_nul, &__PYMODULE_METHODS, &__PYMODULE_SLOTS);

        /// The module's entry point, found by the import system by name.
        #[no_mangle]
        pub unsafe extern "C" fn #init() -> *mut ::cpython_api::ffi::PyObject {
            __PYMODULE_DEF.init()
        }
    }
    .into()
}
