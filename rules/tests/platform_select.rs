// cpufeatures' libc dependency is aarch64-only: the generated target
// select()s it, so this builds on x86_64 without libc and on aarch64 with it
// (cpufeatures reads the auxiliary vector through libc there).
#[cfg(target_arch = "x86_64")]
cpufeatures::new!(cpu_feature, "sse2");
#[cfg(target_arch = "aarch64")]
cpufeatures::new!(cpu_feature, "aes");

#[test]
fn detection_runs() {
    let detected = cpu_feature::get();
    #[cfg(target_arch = "x86_64")]
    assert!(detected, "SSE2 is part of x86_64");
    let _ = detected;
}
