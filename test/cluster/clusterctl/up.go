package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/kubetest"
)

func (c *cluster) up() error {
	if err := c.preflight(); err != nil {
		return err
	}
	for _, d := range []string{"pki", "logs", "pids", "cni/net.d", "kubelet", "images"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := c.writePKI(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := c.hostNetwork(); err != nil {
		return err
	}
	pki := func(f string) string { return c.path("pki", f) }
	etcdBin, _ := exec.LookPath("etcd")
	if err := c.start("etcd", etcdBin, "--data-dir", c.path("etcd"), "--name", "weft",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--listen-metrics-urls", "http://127.0.0.1:2381"); err != nil {
		return err
	}
	k := func(b string) string { return filepath.Join(c.bin, b) }
	if err := c.start("kube-apiserver", k("kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379", "--bind-address", nodeIP, "--advertise-address", nodeIP,
		"--secure-port", "6443", "--cert-dir", c.path("pki", "apiserver-generated"),
		"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
		"--client-ca-file", pki("ca.crt"),
		"--kubelet-client-certificate", pki("apiserver-kubelet-client.crt"), "--kubelet-client-key", pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
		"--service-cluster-ip-range", serviceCIDR, "--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.waitFor("the API server", "kube-apiserver", 60*time.Second, func() error {
		_, err := c.kubectl(ctx, "", "get", "--raw", "/readyz")
		return err
	}); err != nil {
		return err
	}
	if err := c.start("kube-controller-manager", k("kube-controller-manager"),
		"--kubeconfig", pki("controller-manager.kubeconfig"), "--authentication-kubeconfig", pki("controller-manager.kubeconfig"),
		"--authorization-kubeconfig", pki("controller-manager.kubeconfig"),
		"--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
		"--use-service-account-credentials", "--cluster-cidr", clusterCIDR, "--service-cluster-ip-range", serviceCIDR,
		"--leader-elect=false", "--bind-address", "127.0.0.1"); err != nil {
		return err
	}
	if err := c.start("kube-scheduler", k("kube-scheduler"), "--kubeconfig", pki("scheduler.kubeconfig"),
		"--authentication-kubeconfig", pki("scheduler.kubeconfig"), "--authorization-kubeconfig", pki("scheduler.kubeconfig"),
		"--leader-elect=false", "--bind-address", "127.0.0.1"); err != nil {
		return err
	}
	if err := c.startNode(ctx); err != nil {
		return err
	}
	return c.startDNS(ctx)
}

// hostNetwork makes the node's address, the CNI config
// and the sysctls Services need; it records what it changed for down.
func (c *cluster) hostNetwork() error {
	// The node's address sits on lo: reachable from the host and from pods
	// (through the bridge gateway), never put on a wire.
	if out, _ := exec.Command("ip", "-4", "addr", "show", "dev", "lo").Output(); !strings.Contains(string(out), nodeIP+"/32") {
		if err := run("ip", "addr", "add", nodeIP+"/32", "dev", "lo"); err != nil {
			return fmt.Errorf("node address: %w", err)
		}
	}
	for _, s := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"} {
		p := "/proc/sys/" + s
		saved := c.path("sysctl-" + strings.ReplaceAll(s, "/", "_"))
		if _, err := os.Stat(saved); err != nil {
			old, _ := os.ReadFile(p)
			os.WriteFile(saved, old, 0o644)
		}
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", s, err)
		}
	}
	// The kubelet hands pods this resolv.conf; cluster DNS comes from clusterDNS.
	os.WriteFile(c.path("resolv.conf"), []byte("nameserver "+dnsService+"\n"), 0o644)
	return os.WriteFile(c.path("cni/net.d/10-weft.conflist"), []byte(cniConfig()), 0o644)
}

func (c *cluster) startNode(ctx context.Context) error {
	if err := os.WriteFile(c.path("containerd.toml"), []byte(containerdConfig(c.dir)), 0o644); err != nil {
		return err
	}
	containerd, _ := exec.LookPath("containerd")
	if err := c.start("containerd", containerd, "--config", c.path("containerd.toml")); err != nil {
		return err
	}
	if err := c.waitFor("containerd", "containerd", 30*time.Second, func() error {
		return ctr("version").Run()
	}); err != nil {
		return err
	}
	if err := c.ensureImages(); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(kubeletConfig(c.dir)), 0o644); err != nil {
		return err
	}
	pki := func(f string) string { return c.path("pki", f) }
	if err := c.start("kubelet", filepath.Join(c.bin, "kubelet"), "--config", c.path("kubelet.yaml"),
		"--kubeconfig", pki("kubelet.kubeconfig"), "--root-dir", c.path("kubelet"),
		"--node-ip", nodeIP, "--hostname-override", nodeName); err != nil {
		return err
	}
	if err := c.start("kube-proxy", filepath.Join(c.bin, "kube-proxy"), "--kubeconfig", pki("kube-proxy.kubeconfig"),
		"--proxy-mode", "iptables", "--cluster-cidr", clusterCIDR, "--hostname-override", nodeName,
		"--conntrack-max-per-core", "0", "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"); err != nil {
		return err
	}
	return c.waitFor("node "+nodeName+" Ready", "kubelet", 90*time.Second, func() error {
		out, err := c.kubectl(ctx, "", "get", "node", nodeName, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})
}

func (c *cluster) startDNS(ctx context.Context) error {
	if _, err := c.kubectl(ctx, coreDNSManifests, "apply", "-f", "-"); err != nil {
		return err
	}
	return c.waitFor("CoreDNS ready", "kubelet", 90*time.Second, func() error {
		out, err := c.kubectl(ctx, "", "-n", "kube-system", "get", "deploy", "coredns", "-o", "jsonpath={.status.readyReplicas}")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "1" {
			return fmt.Errorf("ready replicas %q", out)
		}
		return nil
	})
}

// ensureImages builds (once) and imports the pause, CoreDNS and test-app images.
func (c *cluster) ensureImages() error {
	out, _ := ctr("-n", "k8s.io", "images", "ls", "-q").Output()
	have := string(out)
	root, err := repoRoot()
	if err != nil {
		return err
	}
	builds := []struct {
		tag, pkg, binary string
		args             []string
	}{
		{pauseImage, "./test/cluster/pause", "pause", nil},
		{testImage, "./test/testapp", "testapp", nil},
		{dnsImage, "", filepath.Join(c.bin, "coredns"), nil},
	}
	var tars []string
	for _, b := range builds {
		// Go-built images are rebuilt every time (cheap, and never stale);
		// CoreDNS only when missing.
		if b.pkg == "" && strings.Contains(have, b.tag) {
			continue
		}
		bin := b.binary
		if b.pkg != "" {
			bin = c.path("images", b.binary)
			cmd := exec.Command("go", "build", "-trimpath", "-o", bin, b.pkg)
			cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("building %s: %v: %s", b.pkg, err, out)
			}
		} else if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s not built: run `make k8s-bins`", bin)
		}
		tar := c.path("images", filepath.Base(bin)+".tar")
		name := "/" + filepath.Base(bin)
		img := kubetest.Image{Tag: b.tag, Files: map[string]string{name: bin}, Entrypoint: []string{name}}
		if err := img.WriteArchive(tar); err != nil {
			return err
		}
		tars = append(tars, tar)
	}
	return c.importImages(tars...)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
