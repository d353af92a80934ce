package testenv

import "syscall"

// setParentDeathSignal kills the child if this process dies without stopping
// it (SIGKILL, a crash), so that moto_server is never orphaned.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
