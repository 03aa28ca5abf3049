// Package grpcstore is a store.Store over a remote server's REAPI
// ContentAddressableStorage and ByteStream services (CAS only): the backend
// of a `ferrule worker` process, which reads inputs and writes outputs
// through the server that runs the scheduler.
package grpcstore

import (
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/resource"
	"github.com/ferrule-build/ferrule/remote/store"
)

// Store is a store.Store (CAS only) over the REAPI
// ContentAddressableStorage and ByteStream services of a server: what a
// `ferrule worker` process uses to read inputs and write outputs.
type Store struct {
	cas repb.ContentAddressableStorageClient
	bs  bytestream.ByteStreamClient
}

// New returns a store that talks to the server behind conn.
func New(conn grpc.ClientConnInterface) *Store {
	return &Store{cas: repb.NewContentAddressableStorageClient(conn), bs: bytestream.NewByteStreamClient(conn)}
}

func digestOf(k store.Key) *repb.Digest { return &repb.Digest{Hash: k.Hash, SizeBytes: k.Size} }

// Get reads a CAS blob through ByteStream.Read.
func (s *Store) Get(ctx context.Context, k store.Key, offset int64) (io.ReadCloser, int64, error) {
	if k.Kind != store.CAS {
		return nil, 0, errors.New("grpcstore: only the CAS is available to workers")
	}
	ctx, cancel := context.WithCancel(ctx)
	rs, err := s.bs.Read(ctx, &bytestream.ReadRequest{ResourceName: resource.ReadName(k.Instance, k.Function, digestOf(k), false), ReadOffset: offset})
	if err != nil {
		cancel()
		return nil, 0, mapErr(err)
	}
	// Read the first message now so that NOT_FOUND is reported by Get.
	first, err := rs.Recv()
	if err != nil && err != io.EOF {
		cancel()
		return nil, 0, mapErr(err)
	}
	return &streamReader{rs: rs, buf: first.GetData(), eof: err == io.EOF, cancel: cancel}, k.Size, nil
}

func mapErr(err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: %v", store.ErrNotFound, err)
	}
	return err
}

type streamReader struct {
	rs     bytestream.ByteStream_ReadClient
	buf    []byte
	eof    bool
	cancel context.CancelFunc
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		m, err := r.rs.Recv()
		if err == io.EOF {
			r.eof = true
			continue
		}
		if err != nil {
			return 0, err
		}
		r.buf = m.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *streamReader) Close() error { r.cancel(); return nil }

// Put writes a CAS blob through ByteStream.Write.
func (s *Store) Put(ctx context.Context, k store.Key, size int64, rd io.Reader) error {
	if k.Kind != store.CAS {
		return errors.New("grpcstore: only the CAS is available to workers")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws, err := s.bs.Write(ctx)
	if err != nil {
		return err
	}
	name := resource.WriteName(k.Instance, resource.NewUUID(), k.Function, digestOf(k), false)
	buf := make([]byte, 256<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(rd, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return rerr
		}
		last := off+int64(n) >= size || rerr != nil
		req := &bytestream.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: last}
		if off == 0 {
			req.ResourceName = name
		}
		if err := ws.Send(req); err != nil {
			if err == io.EOF { // the server ended early: the blob exists
				break
			}
			return err
		}
		off += int64(n)
		if last {
			break
		}
	}
	resp, err := ws.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.CommittedSize != size && resp.CommittedSize != -1 {
		return fmt.Errorf("upload of %s: server committed %d of %d bytes", name, resp.CommittedSize, size)
	}
	return nil
}

// FindMissing asks FindMissingBlobs, one call per instance and function.
func (s *Store) FindMissing(ctx context.Context, keys []store.Key) ([]store.Key, error) {
	type group struct {
		instance string
		fn       repb.DigestFunction_Value
	}
	groups := map[group][]store.Key{}
	var order []group
	for _, k := range keys {
		if k.Kind != store.CAS {
			return nil, errors.New("grpcstore: only the CAS is available to workers")
		}
		g := group{k.Instance, k.Function}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], k)
	}
	var missing []store.Key
	for _, g := range order {
		ks := groups[g]
		for start := 0; start < len(ks); start += 1000 {
			end := min(start+1000, len(ks))
			req := &repb.FindMissingBlobsRequest{InstanceName: g.instance, DigestFunction: g.fn}
			for _, k := range ks[start:end] {
				req.BlobDigests = append(req.BlobDigests, &repb.Digest{Hash: k.Hash, SizeBytes: k.Size})
			}
			resp, err := s.cas.FindMissingBlobs(ctx, req)
			if err != nil {
				return nil, err
			}
			for _, d := range resp.MissingBlobDigests {
				missing = append(missing, store.Key{Kind: store.CAS, Instance: g.instance, Function: g.fn, Hash: d.Hash, Size: d.SizeBytes})
			}
		}
	}
	return missing, nil
}
