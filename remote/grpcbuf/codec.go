package grpcbuf

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is grpc-go's protobuf codec with its buffers from Default, for
// grpc.ForceServerCodecV2. grpc-go's own codec takes them from the
// process-wide default pool whatever the server's BufferPool option says:
// that pool's tiers jump from 32 KiB to 1 MiB and are cleared on every Get,
// so each 64 KiB ByteStream write message cleared 1 MiB.
type Codec struct{}

// Name is "proto": the codec replaces the default one, not a new subtype.
func (Codec) Name() string { return "proto" }

// Marshal encodes v into one buffer from Default (or a plain slice for
// messages too small to pool).
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("grpcbuf: cannot marshal %T, not a proto.Message", v)
	}
	size := proto.Size(m)
	// UseCachedSize reuses the Size just computed.
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := Default.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		Default.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, Default)}, nil
}

// Unmarshal decodes data into v, joining its frames in a buffer from
// Default when there are several.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("grpcbuf: cannot unmarshal into %T, not a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(Default)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
