package memory

import (
	"testing"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New(0) })
}

func TestBounded(t *testing.T) {
	storetest.RunBounded(t, func(t *testing.T, maxBytes int64) store.Store { return New(maxBytes) })
}
