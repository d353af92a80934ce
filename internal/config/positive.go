package config

import "fmt"

// Knob is a setting a Handler's New checks: the variable that sets it and
// its value (a duration as int64 nanoseconds).
type Knob struct {
	Name  string
	Value int64
}

// RequirePositive returns an error naming the first knob that is not
// positive. Settings converted from a loaded config never have one (the
// tags give the defaults); settings built by hand (tests, the local demo)
// start from Defaults, so no default is written a second time.
func RequirePositive(knobs ...Knob) error {
	for _, k := range knobs {
		if k.Value <= 0 {
			return fmt.Errorf("config: %s=%d: must be positive", k.Name, k.Value)
		}
	}
	return nil
}
