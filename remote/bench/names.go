package bench

import (
	"crypto/rand"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// ReadName returns the ByteStream resource name for reading d from
// instance: `{instance}/blobs/{hash}/{size}`, or
// `{instance}/compressed-blobs/zstd/{hash}/{size}` when compressed.
func ReadName(instance string, d *repb.Digest, compressed bool) string {
	return prefix(instance) + blobPath(d, compressed)
}

// WriteName returns the ByteStream resource name for uploading d to
// instance under the upload id uuid:
// `{instance}/uploads/{uuid}/blobs/{hash}/{size}` or its
// compressed-blobs/zstd form.
func WriteName(instance, uuid string, d *repb.Digest, compressed bool) string {
	return prefix(instance) + "uploads/" + uuid + "/" + blobPath(d, compressed)
}

func prefix(instance string) string {
	if instance == "" {
		return ""
	}
	return instance + "/"
}

func blobPath(d *repb.Digest, compressed bool) string {
	if compressed {
		return fmt.Sprintf("compressed-blobs/zstd/%s/%d", d.GetHash(), d.GetSizeBytes())
	}
	return fmt.Sprintf("blobs/%s/%d", d.GetHash(), d.GetSizeBytes())
}

// NewUUID returns a random (version 4) UUID in its canonical text form, as
// REAPI asks for the upload id of a ByteStream write.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to a
		// fixed pattern rather than panicking. Upload ids need only be
		// unique per client, and this keeps the name well-formed.
		b = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
