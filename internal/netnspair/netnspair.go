// Package netnspair makes two network namespaces, a client and a server
// "pod", joined by a veth pair with one address each (IPv4, and IPv6 when
// asked), and removes them. Transparent-mode tests and the benchmark's
// pair layouts use it; linkerd-init's rules and the proxies are theirs to
// add (Exec runs a command in a namespace). Needs root and ip(8).
package netnspair

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Options name the namespaces and give their addresses.
type Options struct {
	// Name is a short unique tag: the namespaces are weft-<Name>-a
	// (client) and weft-<Name>-b (server), the veth ends w<Name>a/b (at
	// most 13 bytes of Name, the kernel's interface name limit).
	Name string
	// ClientIP and ServerIP are IPv4 addresses in one /24 (for Weft, in
	// 198.18.0.0/16).
	ClientIP, ServerIP string
	// ClientIP6 and ServerIP6, if set, are IPv6 addresses in one /64.
	ClientIP6, ServerIP6 string
}

// Pair is two namespaces joined by a veth pair.
type Pair struct {
	Client, Server string // namespace names
	o              Options
	made           []string // namespaces created, for Close
}

// Create makes the namespaces and the link; on error it removes what it
// made.
func Create(o Options) (*Pair, error) {
	if o.Name == "" || len(o.Name) > 13 {
		return nil, fmt.Errorf("netnspair: name %q: want 1 to 13 bytes", o.Name)
	}
	if o.ClientIP == "" || o.ServerIP == "" {
		return nil, errors.New("netnspair: ClientIP and ServerIP are required")
	}
	p := &Pair{Client: "weft-" + o.Name + "-a", Server: "weft-" + o.Name + "-b", o: o}
	vethA, vethB := "w"+o.Name+"a", "w"+o.Name+"b"
	steps := [][]string{}
	for _, ns := range []string{p.Client, p.Server} {
		if err := run("ip", "netns", "add", ns); err != nil {
			p.Close()
			return nil, err
		}
		p.made = append(p.made, ns)
		steps = append(steps, []string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"ip", "-n", p.Client, "link", "add", vethA, "type", "veth", "peer", "name", vethB, "netns", p.Server},
		[]string{"ip", "-n", p.Client, "addr", "add", o.ClientIP + "/24", "dev", vethA},
		[]string{"ip", "-n", p.Server, "addr", "add", o.ServerIP + "/24", "dev", vethB})
	if o.ClientIP6 != "" && o.ServerIP6 != "" {
		steps = append(steps,
			[]string{"ip", "-n", p.Client, "addr", "add", o.ClientIP6 + "/64", "dev", vethA, "nodad"},
			[]string{"ip", "-n", p.Server, "addr", "add", o.ServerIP6 + "/64", "dev", vethB, "nodad"})
	}
	steps = append(steps,
		[]string{"ip", "-n", p.Client, "link", "set", vethA, "up"},
		[]string{"ip", "-n", p.Server, "link", "set", vethB, "up"})
	for _, s := range steps {
		if err := run(s...); err != nil {
			p.Close()
			return nil, err
		}
	}
	// The kernel reports a veth's carrier asynchronously (link events are
	// batched, up to a second apart). IPv4 works before that; IPv6 does
	// not answer neighbour discovery, so a test's first IPv6 connection
	// waited a SYN retransmit (1 s) and the proxy's connect timeout hit.
	for ns, dev := range map[string]string{p.Client: vethA, p.Server: vethB} {
		if err := waitOperUp(ns, dev, 5*time.Second); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// waitOperUp waits until dev in namespace ns is operationally up.
func waitOperUp(ns, dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := Run(ns, "cat", "/sys/class/net/"+dev+"/operstate")
		if err == nil && strings.TrimSpace(out) == "up" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netnspair: %s in %s not up after %v (operstate %q, %v)", dev, ns, limit, strings.TrimSpace(out), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClientIP and ServerIP are the namespaces' IPv4 addresses.
func (p *Pair) ClientIP() string { return p.o.ClientIP }

// ServerIP is the server namespace's IPv4 address.
func (p *Pair) ServerIP() string { return p.o.ServerIP }

// Exec is the command line that runs args in namespace ns.
func Exec(ns string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, args...)
}

// Run runs args in namespace ns and returns its combined output.
func Run(ns string, args ...string) (string, error) {
	argv := Exec(ns, args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Close removes the namespaces (the veth goes with them). Processes still
// running in them keep them alive: stop those first.
func (p *Pair) Close() error {
	var errs []error
	for i := len(p.made) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", p.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	p.made = nil
	return errors.Join(errs...)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netnspair: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
