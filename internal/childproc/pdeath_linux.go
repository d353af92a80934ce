package childproc

import "syscall"

// setParentDeathSignal kills the child if this process dies without stopping
// it (SIGKILL, a crash, `go test -timeout`), so that no child is orphaned.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
