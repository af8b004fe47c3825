package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// down stops what up started, by pid, and removes its state. It works after
// a crash too: every step tolerates what is already gone.
func (c *cluster) down() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root")
	}
	if _, err := os.Stat(c.dir); err != nil {
		fmt.Fprintln(os.Stderr, "no cluster state at", c.dir)
		return nil
	}
	var errs []error
	for _, name := range []string{"kube-proxy", "kubelet"} {
		c.stop(name)
	}
	if c.running("containerd") {
		c.removeContainers()
	}
	c.stop("containerd")
	c.killShims()
	for i := len(components) - 1; i >= 0; i-- {
		c.stop(components[i])
	}
	// kube-proxy's own cleanup, then whatever KUBE-*/CNI-* chains the
	// kubelet, kube-proxy and the CNI plugins left.
	exec.Command(filepath.Join(c.bin, "kube-proxy"), "--cleanup").Run()
	for _, fam := range []string{"iptables", "ip6tables"} {
		if err := cleanChains(fam); err != nil {
			errs = append(errs, err)
		}
	}
	// Pod network namespaces made by this cluster's containerd (cni-<id>).
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "cni-") {
				exec.Command("ip", "netns", "del", f[0]).Run()
			}
		}
	}
	for _, args := range [][]string{
		{"ip", "link", "del", bridgeName}, {"ip", "addr", "del", nodeIP + "/32", "dev", "lo"},
	} {
		exec.Command(args[0], args[1:]...).Run()
	}
	for _, s := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		if old, err := os.ReadFile(c.path("sysctl-" + strings.ReplaceAll(s, "/", "_"))); err == nil {
			os.WriteFile("/proc/sys/"+s, old, 0o644)
		}
	}
	os.RemoveAll("/var/lib/cni/networks/" + cniNetwork)
	c.unmountUnder(c.dir)
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", c.dir, err))
	}
	if len(errs) == 0 {
		fmt.Fprintln(os.Stderr, "cluster stopped and its state removed")
	}
	return errors.Join(errs...)
}

// cleanChains removes, in every table, the rules that jump to KUBE-* or
// CNI-* chains (by rule number) and then those chains.
func cleanChains(family string) error {
	out, err := exec.Command(family + "-save").Output()
	if err != nil {
		return nil // that family is not in use here
	}
	ours := func(name string) bool { return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-") }
	table := ""
	chains := map[string][]string{}   // table → our chains
	builtins := map[string][]string{} // table → other chains
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			if name := strings.Fields(line[1:])[0]; ours(name) {
				chains[table] = append(chains[table], name)
			} else {
				builtins[table] = append(builtins[table], name)
			}
		}
	}
	for t, names := range builtins {
		for _, chain := range names {
			for range 1000 { // bounded: delete the first jump to one of ours until none is left
				n := firstJump(family, t, chain, ours)
				if n == 0 {
					break
				}
				exec.Command(family, "-t", t, "-D", chain, strconv.Itoa(n)).Run()
			}
		}
	}
	var errs []error
	for t, names := range chains {
		for _, n := range names {
			exec.Command(family, "-t", t, "-F", n).Run()
		}
		for _, n := range names {
			if out, err := exec.Command(family, "-t", t, "-X", n).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s -X %s: %v: %s", family, t, n, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// firstJump returns the 1-based number of the first rule in chain that jumps
// to a chain ours accepts, or 0.
func firstJump(family, table, chain string, ours func(string) bool) int {
	out, err := exec.Command(family, "-t", table, "-S", chain).Output()
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		n++
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
				return n
			}
		}
	}
	return 0
}

// stop sends SIGTERM to a recorded pid, then SIGKILL after 10 s.
func (c *cluster) stop(name string) {
	pid := c.pid(name)
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			os.Remove(c.path("pids", name))
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	os.Remove(c.path("pids", name))
}

// removeContainers kills and deletes every container in containerd's k8s.io
// namespace (they were all made by this cluster's kubelet).
func (c *cluster) removeContainers() {
	out, _ := ctr("-n", "k8s.io", "tasks", "ls", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		ctr("-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).Run()
	}
	time.Sleep(500 * time.Millisecond)
	for _, id := range strings.Fields(string(out)) {
		ctr("-n", "k8s.io", "tasks", "rm", "-f", id).Run()
	}
	out, _ = ctr("-n", "k8s.io", "containers", "ls", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		ctr("-n", "k8s.io", "containers", "rm", id).Run()
	}
}

// killShims stops the containerd-shim processes of this cluster's containerd
// (re-parented when it exited), recognised by the socket they were given.
func (c *cluster) killShims() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(cmdline), containerdSock) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder unmounts everything mounted below dir (pod volumes), deepest first.
func (c *cluster) unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/self/mounts")
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

func (c *cluster) status() error {
	for _, name := range components {
		state := "stopped"
		if pid := c.pid(name); pid != 0 {
			state = fmt.Sprintf("running (pid %d)", pid)
		}
		fmt.Printf("%-24s %s\n", name, state)
	}
	if c.running("kube-apiserver") {
		fmt.Println("kubeconfig:", c.kubeconfig())
	}
	return nil
}
