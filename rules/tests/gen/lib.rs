//! A crate whose build script generated part of it.
include!(concat!(env!("OUT_DIR"), "/generated.rs"));

pub const GREETING: &str = env!("BUILD_GREETING");

#[cfg(from_build_script)]
pub fn configured() -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_script_output_reaches_the_crate() {
        assert_eq!(super::answer(), 42);
        assert_eq!(super::GREETING, "hello from build.rs");
        assert!(super::configured());
        assert_eq!(env!("CARGO_PKG_VERSION"), "1.2.3");
    }
}
