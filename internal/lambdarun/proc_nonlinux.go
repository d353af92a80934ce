//go:build !linux

package lambdarun

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}

// childPIDs is not available here: PID reports 0.
func childPIDs(int) []int { return nil }

func alive(int) bool { return false }
