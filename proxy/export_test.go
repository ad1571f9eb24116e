package proxy

import "time"

// WithClock makes the server built from o read the time from now, for its
// rate-limited warnings.
func WithClock(o *Options, now func() time.Time) { o.now = now }
