// A build script exercising what cargo_build_script feeds to the crate:
// a cfg, an env var, a generated file in OUT_DIR, and the cargo environment.
use std::env;
use std::fs;
use std::path::Path;

fn main() {
    let out = env::var("OUT_DIR").expect("OUT_DIR");
    assert!(Path::new(&out).is_absolute(), "OUT_DIR must be absolute");
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    assert!(Path::new(&manifest).join("build.rs").exists(), "cwd/CARGO_MANIFEST_DIR is the crate dir");
    assert_eq!(env::var("CARGO_PKG_VERSION").unwrap(), "1.2.3");
    assert_eq!(env::var("CARGO_FEATURE_EXTRA").unwrap(), "1");
    assert_eq!(env::var("CARGO_CFG_TARGET_OS").unwrap(), "linux");
    assert!(env::var("TARGET").unwrap().contains("linux"));
    assert!(env::var_os("HOME").is_none(), "HOME leaked into the build script");
    let rustc = env::var("RUSTC").expect("RUSTC");
    let version = std::process::Command::new(&rustc).arg("--version").output().expect("run RUSTC");
    assert!(version.status.success());
    fs::write(Path::new(&out).join("generated.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    println!("cargo:rustc-cfg=from_build_script");
    println!("cargo:rustc-env=BUILD_GREETING=hello from build.rs");
    println!("cargo:rerun-if-changed=build.rs");
}
