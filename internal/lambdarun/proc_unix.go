//go:build unix

package lambdarun

import "syscall"

// procAttr puts the function in its own process group, so that killGroup
// also ends any processes it started.
func procAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(a)
	return a
}

// killGroup kills the process group led by pid. The group id stays reserved
// while any member lives, so this is safe after the leader was reaped.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// terminate asks pid to stop (SIGTERM).
func terminate(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }
