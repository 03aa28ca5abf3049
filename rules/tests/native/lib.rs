//! Safe wrapper over the native library the build script made.
extern "C" {
    fn ferrule_native_triple(x: u32) -> u32;
}

pub fn triple(x: u32) -> u32 {
    unsafe { ferrule_native_triple(x) }
}
