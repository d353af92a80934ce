//go:build unix && !linux

package testenv

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
