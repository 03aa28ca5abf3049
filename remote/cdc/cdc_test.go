package cdc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// testdata/SekienAkashita.jpg is the public-domain image the FastCDC
// reference implementations test with (109466 bytes, SHA-256 d9e749d9...).

type vector struct {
	offset, length int
	sha256         string
}

// FastCDC 2020 vectors: remote-apis'
// build/bazel/remote/execution/v2/fastcdc2020_test_vectors.txt (also
// Bazel's FastCdcChunkerTest): min 4096, avg 16384, max 65535,
// normalization 2.
var fastVectors = map[uint32][]vector{
	0: {
		{0, 19186, "0f9efa589121d5d9e9e2c4ace91337d77cae866537143f6f15a0ffd525a77c2d"},
		{19186, 19279, "c7c86a165573c16448cda35c9169742e85645af42be22889f8b96b8ee0ec7cb0"},
		{38465, 17354, "bc88521e28a8b4479cdea5f75aa721a24f3a0a7d0be903aa6d505c574e51e89d"},
		{55819, 16387, "4b8dac2652e4685c629d2bb1ae9d4448e676b86f2e67ca0b2fff3d9580184b79"},
		{72206, 19940, "c0a7062da6f2386c28e086ee0cedd5732252741269838773cff1ddb05b2df6ed"},
		{92146, 17320, "7fa5b12134dc75cd2ac8dc60d3a8f3c8d22f0ee9d4cf74a4aa937e2a0d2d79a5"},
	},
	666: {
		{0, 17635, "cb3a9d80a3569772d4ed331ca37ab0c862c759897b890fc1aac90a4f2ea3a407"},
		{17635, 17334, "d758c6b7b0b7eef1e996f8ccd17de6c645360b03a26c35541e7581348ac08944"},
		{34969, 19136, "24846aefd89e510594bae3e9d7d5ea5012067601512610fed126a3c57ba993f5"},
		{54105, 17467, "efa785e1fefb49f190e665f72fd246c1442079874508c312196da1fb3040d00b"},
		{71572, 23593, "a2f557bdd8d40d8faada963ad5f91ec54b10ccee7c5ae72754a65137592dc607"},
		{95165, 14301, "e131100b4a7147ccad19dc63c4a2fac1f5d8b644e1373eeb6803825024234efc"},
	},
}

// RepMaxCDC vectors: Bazel's RepMaxCdcChunkerTest, generated there with
// Buildbarn's go-cdc.
var repMaxVectors = []struct {
	min, horizon uint64
	chunks       []vector
}{
	{4096, 32768, []vector{
		{0, 7026, "3c386537b8c3200dd2ab6623f6096a576d07844a4a0d5d2994d13e24887dae46"},
		{7026, 5198, "cc7fb08694b471e3ba660b700b347775d1e7a55db8f308c176e2eb6776b5222c"},
		{12224, 5310, "096a3e0e42f0a8b7a5a3a337e9b5b4c7fc59abcd6f69486fb68fe4c5c156300f"},
		{17534, 4271, "3f4a0b00f9a04959806c9ce9e530fa5d761930ef6c8477117b58eb93196342e8"},
		{21805, 5278, "d0c2f82664d8887bd2d289a75baea1d5688e6ee586f8767149bfef9c6df8fe63"},
		{27083, 5588, "558e6b58c659f7463c846a0d18c155a86520d1ca69102f102635c08e8b0897e2"},
		{32671, 5017, "c3c66478eb8e1632768e6e13dc31e492ac78befca38e9db85525b4b274c5b5d7"},
		{37688, 6761, "a5ce22ca3a02323451ddca6db5319c26b5fc1abc5621a033c98cd3de154cd29d"},
		{44449, 5541, "ec4752962eda083bf78b24cb087e07451ced85d8c0d719f32c474f7dae8fd764"},
		{49990, 7612, "3d9e8dc0a5f14dee7db5eabf99bb636352081423f122a84fdb160cecc2ad01bb"},
		{57602, 5501, "f8c747a292f7fd6433945356ee314b978b423ac4c3d248c8fdf36c0693eb6006"},
		{63103, 4695, "71249e1031dc237ab6393381a30a10ef90d9a93f532c135b11cc0df60a767b5f"},
		{67798, 4362, "95c42ec307be0ce1efde6de814c668f05a31887fde9501b478faca225cf9b8c7"},
		{72160, 6221, "8869f4871a0f3fb63775e0fb7f10e170a59b71a6fa0a91a18fa3cf5fff987eba"},
		{78381, 7190, "d2f91644457863f716071e76e9b1046408820aa95b36471d5e70ee5c91b611a2"},
		{85571, 5858, "3507024624db4ff48ee546e984d7c60461d6a526aba7e4aa33833b162785e79e"},
		{91429, 4382, "9b19e98bc5d9b6f486c7c7281fd61044b8e5333363048b20ce3dcb2ee0172980"},
		{95811, 8022, "e56dbfa2a82695fed3c565857dbc644af91c983b55c13fe20d9e03bb89e009e2"},
		{103833, 5633, "7d76fde9af9a911c4e580db9227e5109c5de28101f3f26637c527e80215aad38"},
	}},
	{8192, 0, []vector{
		{0, 8192, "716c5e702f4bee5f18426da9e9eb77d22aa936486741768b86fff472bc18c363"},
		{8192, 8192, "33df8556634b77338abee984190d1aa21efb10411edeae3820fd61a93e489f58"},
		{16384, 8192, "a05018146657a5c999868a9e3f6e94da715c519f929005ca50404eb5a30caf1f"},
		{24576, 8192, "e124b2b4e8847def80e1b8da2fbfa5b483c3bcab6cf2d88e50d598d6c2d2e65c"},
		{32768, 8192, "7855d8367f097e33d0d3afbdba0e17749309a0dfb48f3d373bdf94b9b8f378e1"},
		{40960, 8192, "782a8f7b5367f177b94da16dc14026a3af3dcfc25b6b53f2060eafee0bc16922"},
		{49152, 8192, "3be28a5d9d67d5f8f9b30fbe742406cfefb46c139b48a47eeb98837fbb55128b"},
		{57344, 8192, "e6d7615aeefa30776bd0de14ad0e9ac5a738a767c63aa8c3310aa85c49d16d44"},
		{65536, 8192, "316e9ca063049a490d8f8431f109f2eaf0bf74739b4c3f4be9da46144733c327"},
		{73728, 8192, "2b4a043bd77df955a9fa30358597a90bca046474917e91d3715205f9d674a3bf"},
		{81920, 8192, "78abb22658ea5642440139f1bf86382d4bca2d33858fd8e15a170f1c1ac19651"},
		{90112, 8192, "076758af278b0fb9fd0313db8f6b796639c23241e2c8d831503e272e069d9aea"},
		{98304, 11162, "e776b8d90b880e10e4fdc4f99ba3b0bfbe471f26362007a1775d4cab46a539c7"},
	}},
}

func image(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/SekienAkashita.jpg")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkVectors(t *testing.T, c Chunker, data []byte, want []vector) {
	t.Helper()
	var got []vector
	off := 0
	err := c.Split(bytes.NewReader(data), func(b []byte) error {
		sum := sha256.Sum256(b)
		got = append(got, vector{off, len(b), hex.EncodeToString(sum[:])})
		off += len(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d chunks, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("chunk %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFastCDCVectors(t *testing.T) {
	data := image(t)
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:4]) != "d9e749d9" {
		t.Fatalf("test image has SHA-256 %x", sum)
	}
	for seed, want := range fastVectors {
		c, err := newFastCDC(4096, 16384, 65535, 2, seed)
		if err != nil {
			t.Fatal(err)
		}
		checkVectors(t, c, data, want)
	}
}

func TestRepMaxVectors(t *testing.T) {
	data := image(t)
	for _, v := range repMaxVectors {
		c, err := NewRepMax(&repb.RepMaxCdcParams{MinChunkSizeBytes: v.min, HorizonSizeBytes: v.horizon})
		if err != nil {
			t.Fatal(err)
		}
		checkVectors(t, c, data, v.chunks)
	}
}

func TestGearTable(t *testing.T) {
	// The first and last entries of the table as published by fastcdc-rs,
	// Bazel and go-cdc.
	if gear[0] != 0x3b5d3c7d207e37dc || gear[255] != 0xaabd2b2a451504e1 {
		t.Fatalf("gear[0] = %#x, gear[255] = %#x", gear[0], gear[255])
	}
}

// Short reads must not move cut points: chunking is a function of content.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestSplitIndependentOfReads(t *testing.T) {
	data := make([]byte, 3<<20+123)
	rand.New(rand.NewSource(7)).Read(data)
	fc, _ := NewFastCDC(&repb.FastCdc2020Params{AvgChunkSizeBytes: 64 << 10})
	rm, _ := NewRepMax(&repb.RepMaxCdcParams{MinChunkSizeBytes: 32 << 10, HorizonSizeBytes: 256 << 10})
	for _, c := range []Chunker{fc, rm} {
		var a, b []int
		total := 0
		c.Split(bytes.NewReader(data), func(p []byte) error { a = append(a, len(p)); total += len(p); return nil })
		c.Split(&oneByteReader{data}, func(p []byte) error { b = append(b, len(p)); return nil })
		if total != len(data) || len(a) < 2 || len(a) != len(b) {
			t.Fatalf("%v: %d chunks totalling %d vs %d chunks", c.Function(), len(a), total, len(b))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%v: chunk %d is %d bytes, %d with one-byte reads", c.Function(), i, a[i], b[i])
			}
		}
	}
}

func TestParamsRejected(t *testing.T) {
	for _, p := range []*repb.FastCdc2020Params{{AvgChunkSizeBytes: 0}, {AvgChunkSizeBytes: 512}, {AvgChunkSizeBytes: 3000}, {AvgChunkSizeBytes: 16 << 20}} {
		if _, err := NewFastCDC(p); err == nil {
			t.Errorf("FastCDC %v accepted", p)
		}
	}
	for _, p := range []*repb.RepMaxCdcParams{{MinChunkSizeBytes: 63}, {MinChunkSizeBytes: 128 << 20}, {MinChunkSizeBytes: 1024, HorizonSizeBytes: 1 << 30}} {
		if _, err := NewRepMax(p); err == nil {
			t.Errorf("RepMax %v accepted", p)
		}
	}
}
