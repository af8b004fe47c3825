package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/kubetest"
)

type cluster struct {
	dir string // state
	bin string // Kubernetes binaries
}

func (c *cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.dir}, parts...)...)
}
func (c *cluster) kubeconfig() string { return c.path("kubeconfig") }

// components in start order; down stops them in reverse.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"}

// ports that must be free before up.
var ports = map[string]string{"etcd": "127.0.0.1:2379", "kube-apiserver": nodeIP + ":6443", "kubelet": nodeIP + ":10250"}

func (c *cluster) preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (it starts containerd, kubelet and writes iptables rules): run with sudo")
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make k8s-bins`", b, c.bin)
		}
	}
	for _, b := range []string{"etcd", "containerd", "runc", "ctr", "conntrack", "iptables", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not installed: apt-get install etcd-server containerd runc containernetworking-plugins conntrack iptables iproute2", b)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return errors.New("CNI plugins missing in /usr/lib/cni: apt-get install containernetworking-plugins")
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		return errors.New("kernel lacks br_netfilter (/proc/sys/net/bridge): Services would not work from pods")
	}
	if out, err := exec.Command("iptables", "-t", "nat", "-L", "-n").CombinedOutput(); err != nil {
		return fmt.Errorf("iptables nat table unavailable: %v: %s", err, out)
	}
	if conn, err := net.Dial("unix", containerdSock); err == nil && !c.running("containerd") {
		conn.Close()
		return fmt.Errorf("a containerd this tool did not start serves %s: run `make cluster-down` after a crash", containerdSock)
	}
	for name, addr := range ports {
		if c.running(name) {
			continue
		}
		if l, err := net.Listen("tcp", addr); err != nil {
			if !strings.HasPrefix(addr, nodeIP) {
				return fmt.Errorf("port %s (for %s) is in use: stop whatever holds it, or run `make cluster-down` after a crash", addr, name)
			}
		} else {
			l.Close()
		}
	}
	return nil
}

// pid returns the recorded pid of a component if it still runs.
func (c *cluster) pid(name string) int {
	b, err := os.ReadFile(c.path("pids", name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func (c *cluster) running(name string) bool { return c.pid(name) != 0 }

// start runs a component in the background, detached, logging to logs/.
func (c *cluster) start(name string, args ...string) error {
	if c.running(name) {
		return nil
	}
	logf, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	if err := os.WriteFile(c.path("pids", name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// waitFor polls cond for up to d, failing with the component's log tail.
func (c *cluster) waitFor(what, component string, d time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return nil
		}
		if component != "" && !c.running(component) {
			return fmt.Errorf("%s exited while waiting for %s; log %s:\n%s", component, what, c.path("logs", component+".log"), c.logTail(component))
		}
		time.Sleep(250 * time.Millisecond)
	}
	msg := fmt.Sprintf("timed out after %v waiting for %s: %v", d, what, err)
	if component != "" {
		msg += fmt.Sprintf("\nlog %s:\n%s", c.path("logs", component+".log"), c.logTail(component))
	}
	return errors.New(msg)
}

func (c *cluster) logTail(name string) string {
	b, _ := os.ReadFile(c.path("logs", name+".log"))
	if len(b) > 2500 {
		b = b[len(b)-2500:]
	}
	return string(b)
}

func (c *cluster) kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig()}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// writePKI makes the cluster's CA and every component's certificate and kubeconfig.
func (c *cluster) writePKI() error {
	dir := c.path("pki")
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
		return nil
	}
	ca, err := kubetest.NewCA(dir)
	if err != nil {
		return err
	}
	if _, _, err := ca.Issue("apiserver", "kube-apiserver", nil,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(nodeIP), net.ParseIP(apiService)}); err != nil {
		return err
	}
	if _, _, err := kubetest.WriteServiceAccountKey(dir); err != nil {
		return err
	}
	users := []struct{ name, cn, org string }{
		{"admin", "weft-admin", "system:masters"},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		{"kubelet", "system:node:" + nodeName, "system:nodes"},
		{"kube-proxy", "system:kube-proxy", ""},
	}
	for _, u := range users {
		var orgs []string
		if u.org != "" {
			orgs = []string{u.org}
		}
		crt, key, err := ca.Issue(u.name, u.cn, orgs, nil, nil)
		if err != nil {
			return err
		}
		if u.name == "apiserver-kubelet-client" {
			continue
		}
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: weft, cluster: {server: "https://%s:6443", certificate-authority: %q}}]
users: [{name: %s, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: weft, context: {cluster: weft, user: %s}}]
current-context: weft
`, nodeIP, ca.CertPath, u.name, crt, key, u.name)
		name := u.name + ".kubeconfig"
		if u.name == "admin" {
			name = "../kubeconfig"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(kc), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ctr runs containerd's client against this cluster's containerd.
func ctr(args ...string) *exec.Cmd {
	return exec.Command("ctr", append([]string{"--address", containerdSock}, args...)...)
}
