package transport

import "time"

// orDefault returns v, or def when v is zero or negative: the zero value
// of a Server or Connector setting means its default.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
