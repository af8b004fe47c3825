// Package proctest runs Weft's binaries in tests: built once per test, each
// started with its log kept (shown if the test fails) and stopped by pid
// with SIGTERM, then SIGKILL, at cleanup. A binary started with
// StartListening binds port 0 and says where through its address file
// (--addr-file, internal/serving), so no test picks a "free" port that
// another process may take before the binary binds it.
package proctest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/serving"
)

// Build compiles the named packages of the module rooted at root (a path
// relative to the test's directory, such as "../..") into a temporary
// directory, which it returns.
func Build(t testing.TB, root string, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// Process is a running binary.
type Process struct {
	Cmd    *exec.Cmd
	Exited <-chan struct{} // closed when it has exited
}

// Start runs bin with env added to the test's environment. Its output goes
// to a log shown if the test fails; at cleanup it gets SIGTERM and, if it
// has not exited 10 s later (a test error), SIGQUIT, which makes a Go
// binary print every goroutine's stack into that log before it exits
// (what held it up), then SIGKILL.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logFile := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			t.Errorf("%s (pid %d) did not exit within 10s of SIGTERM", name, cmd.Process.Pid)
		}
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("--- %s log:\n%s", name, b)
		}
	})
	return &Process{Cmd: cmd, Exited: done}
}

// StartListening is Start with --addr-file added to args (weft-proxy and
// weft-controller take it): it waits, up to 30 s, for the binary to write
// where it listens and returns those addresses by name (weft-proxy:
// "admin", "inbound", "bind NAME"…; weft-controller: "<component> admin
// server"…).
func StartListening(t testing.TB, name string, env []string, bin string, args ...string) map[string]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".addrs.json")
	p := Start(t, name, env, bin, append(args, "--addr-file", path)...)
	addrs, err := serving.ReadAddrFile(path, 30*time.Second, p.Exited)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return addrs
}

// FreeAddr is a loopback address nothing listened on a moment ago, for a
// binary that must be told its port and cannot bind port 0 and say where
// (Prometheus). Another process may take the port before the binary binds
// it; whatever can report its address should (StartListening).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitReady polls url (a /ready) until it answers 200, failing the test
// after within.
func WaitReady(t testing.TB, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v (last: %v)", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
