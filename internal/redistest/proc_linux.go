package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to kill the server when the test binary dies.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
