// Compiles native.c into a static library in OUT_DIR and tells rustc to link
// it: the cargo:rustc-link-search path must reach the final link of every
// binary that uses this crate.
use std::env;
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{:?} failed", cmd);
}

fn main() {
    let out = env::var("OUT_DIR").unwrap();
    run(Command::new("cc").args(["-c", "-O1", "-fPIC", "native.c", "-o"]).arg(format!("{}/native.o", out)));
    run(Command::new("ar").arg("crD").arg(format!("{}/libferrule_native.a", out)).arg(format!("{}/native.o", out)));
    std::fs::remove_file(format!("{}/native.o", out)).unwrap();
    println!("cargo:rustc-link-search=native={}", out);
    println!("cargo:rustc-link-lib=static=ferrule_native");
}
