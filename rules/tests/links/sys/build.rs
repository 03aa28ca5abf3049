// A `links = "demo"` package's build script: its cargo:KEY=VALUE metadata
// must reach the build scripts of packages that depend on it.
use std::{env, fs};

fn main() {
    let out = env::var("OUT_DIR").unwrap();
    assert_eq!(env::var("CARGO_MANIFEST_LINKS").unwrap(), "demo");
    fs::create_dir_all(format!("{out}/include")).unwrap();
    fs::write(format!("{out}/include/demo.h"), "#define DEMO 42\n").unwrap();
    // An archive that mentions OUT_DIR: it must come out byte for byte.
    let mut blob = b"!<arch>\n".to_vec();
    blob.extend_from_slice(out.as_bytes());
    blob.push(0);
    fs::write(format!("{out}/libdemo.a"), &blob).unwrap();
    println!("cargo:include={out}/include");
    println!("cargo::metadata=version=7");
    println!("cargo:rustc-env=BLOB_LEN={}", blob.len());
}
