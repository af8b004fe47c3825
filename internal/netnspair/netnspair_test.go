package netnspair

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain doubles as the helper run inside the namespaces: a one-shot
// TCP server (NETNSPAIR_LISTEN) and its client (NETNSPAIR_DIAL).
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETNSPAIR_LISTEN"); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("listening")
		c, err := l.Accept()
		if err == nil {
			io.WriteString(c, "hello from the server namespace")
			c.Close()
		}
		os.Exit(0)
	}
	if addr := os.Getenv("NETNSPAIR_DIAL"); addr != "" {
		for range 50 {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				b, _ := io.ReadAll(c)
				fmt.Print(string(b))
				os.Exit(0)
			}
			time.Sleep(100 * time.Millisecond)
		}
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestPairConnectsAndCloses: a TCP server in the server namespace is
// reachable from the client namespace at ServerIP, and Close removes both
// namespaces.
func TestPairConnectsAndCloses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Create(Options{Name: fmt.Sprintf("n%d", os.Getpid()%100000), ClientIP: "198.18.251.1", ServerIP: "198.18.251.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := p.ServerIP() + ":7000"
	argv := Exec(p.Server, self)
	srv := exec.Command(argv[0], argv[1:]...)
	srv.Env = append(os.Environ(), "NETNSPAIR_LISTEN="+addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	argv = Exec(p.Client, self)
	cli := exec.Command(argv[0], argv[1:]...)
	cli.Env = append(os.Environ(), "NETNSPAIR_DIAL="+addr)
	out, err := cli.CombinedOutput()
	if err != nil || string(out) != "hello from the server namespace" {
		t.Fatalf("client namespace → %s: %v: %q", addr, err, out)
	}
	srv.Process.Kill()
	srv.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	list, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	for _, ns := range []string{p.Client, p.Server} {
		if strings.Contains(string(list), ns) {
			t.Errorf("namespace %s still listed after Close: %s", ns, list)
		}
	}
	if _, err := Create(Options{Name: "this-name-is-too-long", ClientIP: "198.18.251.1", ServerIP: "198.18.251.2"}); err == nil {
		t.Error("Create with a 21-byte name: no error")
	}
}
