//go:build unix

package childproc

import "syscall"

// Attr puts a child in its own process group, so that a Ctrl-C in the
// terminal reaches only this process (which then stops the child itself) and
// KillGroup also ends anything the child started; on Linux the child is
// killed as well if this process dies without stopping it.
func Attr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(a)
	return a
}

// KillGroup kills the process group led by pid. The group id stays reserved
// while any member lives, so this is safe after the leader was reaped.
func KillGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// Terminate asks pid alone to stop (SIGTERM).
func Terminate(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }

// TerminateGroup asks every process in pid's group to stop (SIGTERM).
func TerminateGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGTERM) }
