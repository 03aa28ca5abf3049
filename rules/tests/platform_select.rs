// cpufeatures' libc dependency is aarch64-only: the generated target
// select()s it, so this builds on x86_64 without libc and on aarch64 with it.
cpufeatures::new!(cpu_sse2, "sse2");

#[test]
#[cfg(target_arch = "x86_64")]
fn sse2_detected() {
    assert!(cpu_sse2::get());
}
