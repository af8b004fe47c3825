package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/weftmesh/weft/internal/iptables"
)

// Transparent mode: every replica is a pod of its own, a network namespace
// whose traffic iptables sends through its proxy (the rules linkerd-init
// writes), behind a bridge in a "node" namespace. The node is linked to
// this host by one veth pair, so the host only sends and receives (no
// forwarding through the host's own firewall). The control plane listens
// on the host's end of that link.
const (
	nodeNS     = "weft-demo-node"
	nsPrefix   = "weft-demo-"
	bridge     = "wdemo0"
	hostLink   = "wdemo-host"
	nodeLink   = "wdemo-node"
	hostIP     = "198.18.241.1" // the host's end: the control plane listens here
	nodeLinkIP = "198.18.241.2"
	gatewayIP  = "198.18.240.1" // the bridge, the pods' default gateway
	podNet     = "198.18.240.0/24"
	podBase    = 10 // pods are 198.18.240.10, .11, ...
)

// serviceIP is the virtual address apps use for service i in transparent
// mode; no packet reaches it, the client's proxy resolves it.
func serviceIP(i int) string { return fmt.Sprintf("198.19.240.%d", i+1) }

// network creates and removes the namespaces of transparent mode.
type network struct {
	namespaces []string
	hostRoute  bool
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// transparentReady says whether this machine can run transparent mode, and
// if not, why.
func transparentReady() error {
	if os.Geteuid() != 0 {
		return errors.New("transparent mode needs root (network namespaces and iptables)")
	}
	for _, tool := range []string{"ip", "iptables-legacy-restore", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("transparent mode needs %s: apt-get install iproute2 iptables util-linux", tool)
		}
	}
	return nil
}

// setup builds the node and one namespace per replica, with linkerd-init's
// rules in each replica's namespace.
func (n *network) setup(ctx context.Context, reps []*replica) error {
	if err := sh("ip", "netns", "add", nodeNS); err != nil {
		return fmt.Errorf("%w (another weft demo is running, or one crashed: ip netns del %s, and each %s* namespace)", err, nodeNS, nsPrefix)
	}
	n.namespaces = append(n.namespaces, nodeNS)
	node := func(args ...string) error { return sh(append([]string{"ip", "netns", "exec", nodeNS}, args...)...) }
	steps := [][]string{
		{"ip", "link", "add", hostLink, "type", "veth", "peer", "name", nodeLink, "netns", nodeNS},
		{"ip", "addr", "add", hostIP + "/30", "dev", hostLink},
		{"ip", "link", "set", hostLink, "up"},
		{"ip", "-n", nodeNS, "link", "set", "lo", "up"},
		{"ip", "-n", nodeNS, "addr", "add", nodeLinkIP + "/30", "dev", nodeLink},
		{"ip", "-n", nodeNS, "link", "set", nodeLink, "up"},
		{"ip", "-n", nodeNS, "link", "add", bridge, "type", "bridge"},
		{"ip", "-n", nodeNS, "addr", "add", gatewayIP + "/24", "dev", bridge},
		{"ip", "-n", nodeNS, "link", "set", bridge, "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	if err := node("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	if err := sh("ip", "route", "add", podNet, "via", nodeLinkIP, "dev", hostLink); err != nil {
		return err
	}
	n.hostRoute = true
	ipt := iptables.DefaultConfig()
	for i, r := range reps {
		ns := r.ns
		host, peer := fmt.Sprintf("wdemo%dh", i), fmt.Sprintf("wdemo%dp", i)
		if err := sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		n.namespaces = append(n.namespaces, ns)
		for _, s := range [][]string{
			{"ip", "-n", nodeNS, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns},
			{"ip", "-n", nodeNS, "link", "set", host, "master", bridge},
			{"ip", "-n", nodeNS, "link", "set", host, "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", ns, "link", "set", peer, "name", "eth0"},
			{"ip", "-n", ns, "addr", "add", r.podIP + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "-n", ns, "route", "add", "default", "via", gatewayIP},
		} {
			if err := sh(s...); err != nil {
				return err
			}
		}
		if _, err := iptables.Apply(ctx, ipt, func(ctx context.Context, name string, args []string, stdin string) (string, error) {
			return iptables.ExecRunner(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...), stdin)
		}); err != nil {
			return fmt.Errorf("linkerd-init's rules in %s: %w", ns, err)
		}
	}
	return nil
}

// teardown removes every namespace it made (their links go with them).
func (n *network) teardown() error {
	var errs []error
	if n.hostRoute {
		exec.Command("ip", "route", "del", podNet, "via", nodeLinkIP).Run()
	}
	for i := len(n.namespaces) - 1; i >= 0; i-- {
		if err := sh("ip", "netns", "del", n.namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	n.namespaces = nil
	return errors.Join(errs...)
}
