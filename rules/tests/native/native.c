/* A native library that the crate's build script compiles into OUT_DIR. */
unsigned int ferrule_native_triple(unsigned int x) { return 3 * x; }
