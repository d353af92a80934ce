//go:build unix && !linux

package pipeline

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
