#[test]
fn metadata_reached_the_build_script() {
    assert_eq!(env!("DEMO_HEADER"), "#define DEMO 42");
    assert_eq!(env!("DEMO_VERSION"), "7");
}

#[test]
fn binary_out_dir_files_are_not_rewritten() {
    assert!(sys::BLOB.starts_with(b"!<arch>\n"));
    assert_eq!(sys::BLOB.len().to_string(), sys::BLOB_LEN);
    assert_eq!(sys::BLOB.last(), Some(&0));
}
