//go:build !unix

package childproc

import (
	"os"
	"syscall"
)

// Attr is nil: there are no process groups here.
func Attr() *syscall.SysProcAttr { return nil }

// KillGroup kills pid.
func KillGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// Terminate kills pid.
func Terminate(pid int) { KillGroup(pid) }

// TerminateGroup kills pid.
func TerminateGroup(pid int) { KillGroup(pid) }
