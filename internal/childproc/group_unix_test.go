//go:build unix

package childproc

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopGroupEndsGrandchildren: a child started with Attr leads its own
// group, and KillGroup or TerminateGroup ends what it started too.
func TestStopGroupEndsGrandchildren(t *testing.T) {
	t.Run("KillGroup", func(t *testing.T) { stopEndsGrandchild(t, KillGroup) })
	t.Run("TerminateGroup", func(t *testing.T) { stopEndsGrandchild(t, TerminateGroup) })
}

func stopEndsGrandchild(t *testing.T, stop func(pid int)) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	cmd.SysProcAttr = Attr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	if pgid, err := syscall.Getpgid(cmd.Process.Pid); err != nil || pgid != cmd.Process.Pid {
		t.Fatalf("child's group %d (%v), want its own %d", pgid, err, cmd.Process.Pid)
	}
	stop(cmd.Process.Pid)
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly, want a signal")
	}
	waitGone(t, grandchild)
}

// waitGone waits until pid is gone or a zombie (its reaper may be slow).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				return
			}
		}
	}
	t.Fatalf("grandchild %d still running", pid)
}
