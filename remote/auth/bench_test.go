package auth

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/metadata"
)

// BenchmarkCheck is the per-call cost of the gRPC check: no credential
// source, a bearer token, and basic auth after its first bcrypt check.
func BenchmarkCheck(b *testing.B) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	dir := b.TempDir()
	tokens, htpasswd := dir+"/tokens", dir+"/htpasswd"
	writeFile(b, tokens, "ci writer 0123456789abcdef\n")
	writeFile(b, htpasswd, "alice:"+string(hash)+"\n")
	method := repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName
	for _, c := range []struct {
		name, header string
		cfg          Config
	}{
		{"open", "", Config{}},
		{"token", "Bearer 0123456789abcdef", Config{TokenFile: tokens}},
		{"basic", "Basic YWxpY2U6cHc=", Config{HtpasswdFile: htpasswd}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := New(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", c.header))
			for b.Loop() {
				if _, err := p.checkGRPC(ctx, method); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
