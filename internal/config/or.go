package config

import "time"

// Or returns v when it is set (positive), else def: the defaulting a
// Handler built without a loaded config (tests, the local demo) applies to a
// zero Settings field.
func Or[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
