package s3_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/s3"
	"github.com/ferrule-build/ferrule/remote/store/s3/s3test"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

// BenchmarkFindMissing asks a real S3 server (versitygw on loopback)
// about 500 keys, half of them stored, with several numbers of HEAD
// requests in flight: what the tiered store pays for a FindMissing of 1000
// digests of which its local disk has half.
func BenchmarkFindMissing(b *testing.B) {
	srv := s3test.Start(b)
	srv.MakeBucket(b, "bench")
	ctx := context.Background()
	var keys []store.Key
	put := openParallel(b, srv, 1)
	for i := range 500 {
		data := []byte(fmt.Sprint("find missing ", i))
		k := storetest.CASKey("", repb.DigestFunction_SHA256, data)
		keys = append(keys, k)
		if i%2 == 0 {
			storetest.MustPut(b, put, k, data)
		}
	}
	for _, p := range []int{16, 32, 64, 128, 256} {
		b.Run(fmt.Sprintf("parallel=%d", p), func(b *testing.B) {
			st := openParallel(b, srv, p)
			b.ResetTimer()
			for range b.N {
				missing, err := st.FindMissing(ctx, keys)
				if err != nil {
					b.Fatal(err)
				}
				if len(missing) != 250 {
					b.Fatalf("%d missing, want 250", len(missing))
				}
			}
			b.ReportMetric(float64(b.N*len(keys))/b.Elapsed().Seconds(), "heads/s")
		})
	}
}

func openParallel(b *testing.B, srv *s3test.Server, parallel int) *s3.Store {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := srv.Options("bench", "p")
	o.FindParallel = parallel
	st, err := s3.Open(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}
