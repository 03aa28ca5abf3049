// Depends on the `demo` links package: cargo gives it DEP_DEMO_*.
use std::env;

fn main() {
    let inc = env::var("DEP_DEMO_INCLUDE").expect("DEP_DEMO_INCLUDE is not set");
    let header = std::fs::read_to_string(format!("{inc}/demo.h")).expect("DEP_DEMO_INCLUDE/demo.h");
    println!("cargo:rustc-env=DEMO_HEADER={}", header.trim());
    println!("cargo:rustc-env=DEMO_VERSION={}", env::var("DEP_DEMO_VERSION").expect("DEP_DEMO_VERSION"));
}
