//go:build unix

package testenv

import "syscall"

// childAttr puts a child (moto_server) in its own process group, so that a
// Ctrl-C in the terminal reaches only the demo, which then stops the child
// itself, and killGroup also ends anything the child started.
func childAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(a)
	return a
}

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

func terminateGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGTERM) }
