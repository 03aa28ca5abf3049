pub const BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libdemo.a"));
pub const BLOB_LEN: &str = env!("BLOB_LEN");
