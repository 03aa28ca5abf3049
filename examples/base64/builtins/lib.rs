//! The Rust modules built into the interpreter, as one staticlib: it holds
//! each module's `PyInit_<name>` (listed in config.c's inittab) and the one
//! copy of the Rust standard library they share.
pub use _base64::PyInit__base64;
