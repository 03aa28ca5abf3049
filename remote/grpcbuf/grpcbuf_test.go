package grpcbuf

import (
	"testing"

	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func TestTiers(t *testing.T) {
	var p Pool
	for _, tc := range []struct{ size, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {64<<10 + 5, 128 << 10}, {4 << 20, 4 << 20}, {4<<20 + 1, 4<<20 + 1},
	} {
		b := p.Get(tc.size)
		if len(*b) != tc.size || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.size, len(*b), cap(*b), tc.cap)
		}
		p.Put(b)
	}
	// A returned buffer is handed out again, with its contents.
	b := p.Get(1000)
	(*b)[0] = 7
	p.Put(b)
	c := p.Get(600)
	if cap(*c) != 1024 || len(*c) != 600 {
		t.Fatalf("Get(600) after Put: len %d cap %d", len(*c), cap(*c))
	}
	// A foreign buffer of an odd capacity is not kept.
	odd := make([]byte, 10, 300)
	p.Put(&odd)
	if d := p.Get(300); cap(*d) != 512 {
		t.Errorf("odd buffer reused: cap %d", cap(*d))
	}
}

func TestCodecRoundTrip(t *testing.T) {
	in := &bspb.WriteRequest{ResourceName: "r", Data: make([]byte, 100<<10)}
	in.Data[5] = 9
	data, err := Codec{}.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// Split it in frames, as the transport hands a message over.
	whole := data.Materialize()
	data.Free()
	var frames mem.BufferSlice
	for i := 0; i < len(whole); i += 16 << 10 {
		frames = append(frames, mem.SliceBuffer(whole[i:min(i+16<<10, len(whole))]))
	}
	out := &bspb.WriteRequest{}
	if err := (Codec{}).Unmarshal(frames, out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Error("message changed in a round trip")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, out); err == nil {
		t.Error("garbage unmarshalled")
	}
	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Error("marshalled a string")
	}
}
