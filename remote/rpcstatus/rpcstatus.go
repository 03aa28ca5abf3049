// Package rpcstatus maps the errors of stores, verifiers and codecs onto
// gRPC statuses, in one place for every service.
package rpcstatus

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferrule-build/ferrule/remote/store"
	"github.com/ferrule-build/ferrule/remote/zstdcodec"
)

// Code is the gRPC code for err: NOT_FOUND for a missing entry,
// INVALID_ARGUMENT for content that does not match its digest, corrupt
// compressed data or a bad key, DATA_LOSS for a stored value found damaged
// (the store drops it, so a retry finds it missing), OUT_OF_RANGE,
// RESOURCE_EXHAUSTED for an entry too large or a store full of writes in
// progress, UNAVAILABLE for a store that
// cannot reach the service it depends on, CANCELLED and DEADLINE_EXCEEDED
// for the context's end, INTERNAL otherwise. A status error keeps its own code.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, store.ErrCorrupt): // before the mismatches it may wrap
		return codes.DataLoss
	case errors.Is(err, store.ErrDigestMismatch), errors.Is(err, store.ErrSizeMismatch),
		errors.Is(err, zstdcodec.ErrCorrupt), errors.Is(err, store.ErrInvalidKey):
		return codes.InvalidArgument
	case errors.Is(err, store.ErrOutOfRange):
		return codes.OutOfRange
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrFull):
		return codes.ResourceExhausted
	case errors.Is(err, store.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// Error turns err into a gRPC status error with err's message and the code
// Code gives. Status errors pass through unchanged; nil stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}
