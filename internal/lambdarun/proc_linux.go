package lambdarun

import "syscall"

// setParentDeathSignal kills the function if the test binary dies without
// closing its Runners (e.g. `go test -timeout` panics), so none is orphaned.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
