package chunked_test

import (
	"testing"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/chunked"
	"github.com/ferrule-build/ferrule/remote/store/memory"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

// The decorator passes every store behaviour through unchanged; its own
// behaviour is tested through the service in remote/split.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return chunked.New(memory.New(0), chunked.Options{}) })
}
