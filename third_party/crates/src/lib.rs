// Placeholder so Cargo accepts the manifest; Bazel never builds it.
