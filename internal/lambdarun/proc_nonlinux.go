//go:build !linux

package lambdarun

// childPIDs is not available here: PID reports 0.
func childPIDs(int) []int { return nil }

func alive(int) bool { return false }
