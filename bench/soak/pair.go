package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/bench/meshpair"
	"github.com/weftmesh/weft/internal/serving"
)

// authority is the logical destination the client calls through the
// outbound proxy.
const authority = "backend.soak.svc.cluster.local:80"

// The workloads of the pair: the outbound proxy's and the inbound one's.
var (
	clientWorkload = meshpair.Workload{Namespace: "soak", ServiceAccount: "client"}
	serverWorkload = meshpair.Workload{Namespace: "soak", ServiceAccount: "server"}
)

// pair is the meshed pair under test: a local identity service
// (bench/meshpair: static tokens, a CA generated there), fortio's server as
// the backend, an inbound proxy in front of it and an outbound proxy that
// reaches the inbound one over mTLS, requiring the server's identity.
type pair struct {
	cp               *meshpair.ControlPlane
	backend, in, out *proc
	url              string // what the load generator calls
	procs            []*proc
}

// proxies are the two proxies, outbound first.
func (pr *pair) proxies() []*proc { return []*proc{pr.out, pr.in} }

// stop stops everything the pair started, last started first.
func (pr *pair) stop() {
	for i := len(pr.procs) - 1; i >= 0; i-- {
		pr.procs[i].stop(5 * time.Second)
	}
	if pr.cp != nil {
		pr.cp.Stop()
	}
}

// startPair starts the identity service, the backend and both proxies in
// dir, each ready before the next; on error it stops what it started.
func startPair(dir, proxyBin, ctlBin, fortio, path string) (_ *pair, err error) {
	pr := &pair{}
	defer func() {
		if err != nil {
			pr.stop()
		}
	}()
	start := func(name string, env []string, args ...string) (*proc, error) {
		p, err := startProc(dir, name, env, args...)
		if err != nil {
			return nil, err
		}
		pr.procs = append(pr.procs, p)
		return p, nil
	}
	if pr.cp, err = meshpair.Start(meshpair.Options{Controller: ctlBin, Dir: dir, IdentityAddr: "127.0.0.1:0",
		IdentityAdmin: "127.0.0.1:0", Workloads: []meshpair.Workload{clientWorkload, serverWorkload}}); err != nil {
		return nil, err
	}
	// fortio's server cannot report its port: the one address picked in
	// advance. The proxies bind port 0 and say where (--addr-file).
	backend, err := harness.FreeAddr()
	if err != nil {
		return nil, err
	}
	if pr.backend, err = start("backend", nil, fortio, "server", "-http-port", backend,
		"-grpc-port", "disabled", "-redirect-port", "disabled"); err != nil {
		return nil, err
	}
	if err := harness.WaitHTTP("http://"+backend+"/echo", 10*time.Second); err != nil {
		return nil, fmt.Errorf("fortio backend: %w", err)
	}
	proxy := func(name string, w meshpair.Workload, args ...string) (*proc, map[string]string, error) {
		env, err := pr.cp.ProxyEnv(w)
		if err != nil {
			return nil, nil, err
		}
		// Every collection's pauses in the log, for the GC pause percentiles.
		env = append(env, "GODEBUG=gctrace=1")
		addrFile := filepath.Join(dir, name+".addrs.json")
		p, err := start(name, env, append([]string{proxyBin, "--log-level", "warn", "--addr-file", addrFile,
			"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0",
			"--inbound-addr", "127.0.0.1:0"}, args...)...)
		if err != nil {
			return nil, nil, err
		}
		addrs, err := serving.ReadAddrFile(addrFile, 30*time.Second, p.done)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w:\n%s", name, err, p.tail())
		}
		p.admin = addrs["admin"]
		return p, addrs, p.waitReady(30 * time.Second)
	}
	var inAddrs, outAddrs map[string]string
	if pr.in, inAddrs, err = proxy("proxy-in", serverWorkload, "--inbound-forward", backend); err != nil {
		return nil, err
	}
	if pr.out, outAddrs, err = proxy("proxy-out", clientWorkload,
		"--dst", authority+"=weft://"+serverWorkload.Identity()+"@"+inAddrs["inbound"],
		"--bind", "127.0.0.1:0="+authority); err != nil {
		return nil, err
	}
	bind := outAddrs["bind "+authority]
	pr.url = "http://" + bind + path
	if err := harness.WaitHTTP(pr.url, 15*time.Second); err != nil {
		return nil, fmt.Errorf("through the pair: %w", err)
	}
	return pr, nil
}
