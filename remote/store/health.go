package store

import (
	"errors"
	"time"
)

// ErrUnavailable is returned (wrapped, with the cause) when a store depends
// on a service that cannot be reached or refuses it, such as the shared S3
// tier; the services answer UNAVAILABLE, which clients retry.
var ErrUnavailable = errors.New("storage unavailable")

// Health is the state of a store that depends on a service which can fail
// after start-up, for /status.
type Health struct {
	Name    string    `json:"name"`            // what it is, e.g. s3://bucket/prefix at host:port
	Healthy bool      `json:"healthy"`         // the last call to the service succeeded
	Cause   string    `json:"cause,omitempty"` // the last failure, while unhealthy
	Since   time.Time `json:"since"`           // when it last changed state
	// Uploads to the service that are queued, and those lost since start
	// (dropped from a full queue or failed), where uploads are asynchronous.
	QueuedUploads int64 `json:"queued_uploads"`
	LostUploads   int64 `json:"lost_uploads"`
}

// HealthReporter is implemented by stores that can report their Health.
type HealthReporter interface {
	Health() Health
}

// HealthOf returns the Health of s or of the first store it wraps (through
// Unwrap) that reports it.
func HealthOf(s Store) (Health, bool) {
	for s != nil {
		if hr, ok := s.(HealthReporter); ok {
			return hr.Health(), true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	return Health{}, false
}
