package store

import "time"

// SetACCacheClock replaces the clock of an ACCache (for tests).
func SetACCacheClock(s Store, now func() time.Time) { s.(*acCache).now = now }
