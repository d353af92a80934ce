//go:build unix && !linux

package lambdarun

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
