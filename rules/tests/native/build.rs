// Compiles native.c into a static library in OUT_DIR and tells rustc to link
// it: the cargo:rustc-link-search path must reach the final link of every
// binary that uses this crate. The compiler and archiver are the registered
// C toolchain's, given as CC, AR and CFLAGS as the cc crate reads them.
use std::env;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{:?} failed", cmd);
}

fn tool(var: &str) -> String {
    let p = env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    assert!(Path::new(&p).is_absolute() && Path::new(&p).exists(), "{var}={p} is not an absolute path to a file");
    p
}

fn main() {
    let out = env::var("OUT_DIR").unwrap();
    let cc = tool("CC");
    let ar = tool("AR");
    let cflags = env::var("CFLAGS").expect("CFLAGS is not set");
    run(Command::new(cc)
        .args(cflags.split_whitespace())
        .args(["-c", "-O1", "-fPIC", "native.c", "-o"])
        .arg(format!("{}/native.o", out)));
    run(Command::new(ar).arg("crD").arg(format!("{}/libferrule_native.a", out)).arg(format!("{}/native.o", out)));
    std::fs::remove_file(format!("{}/native.o", out)).unwrap();
    println!("cargo:rustc-link-search=native={}", out);
    println!("cargo:rustc-link-lib=static=ferrule_native");
}
