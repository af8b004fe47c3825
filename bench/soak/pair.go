package main

import (
	"fmt"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/bench/meshpair"
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
	start := func(name string, env []string, admin string, args ...string) (*proc, error) {
		p, err := startProc(dir, name, env, args...)
		if err != nil {
			return nil, err
		}
		pr.procs = append(pr.procs, p)
		p.admin = admin
		return p, nil
	}
	if pr.cp, err = meshpair.Start(meshpair.Options{Controller: ctlBin, Dir: dir, IdentityAddr: "127.0.0.1:0",
		IdentityAdmin: "127.0.0.1:0", Workloads: []meshpair.Workload{clientWorkload, serverWorkload}}); err != nil {
		return nil, err
	}
	// backend, inbound proxy's 4, outbound's 4 + bind.
	a, err := freeAddrs(10)
	if err != nil {
		return nil, err
	}
	backend := a[0]
	if pr.backend, err = start("backend", nil, "", fortio, "server", "-http-port", backend,
		"-grpc-port", "disabled", "-redirect-port", "disabled"); err != nil {
		return nil, err
	}
	if err := harness.WaitHTTP("http://"+backend+"/echo", 10*time.Second); err != nil {
		return nil, fmt.Errorf("fortio backend: %w", err)
	}
	env := func(w meshpair.Workload) ([]string, error) {
		env, err := pr.cp.ProxyEnv(w)
		// Every collection's pauses in the log, for the GC pause percentiles.
		return append(env, "GODEBUG=gctrace=1"), err
	}
	ports := func(p []string) []string {
		return []string{"--log-level", "warn", "--admin-addr", p[0], "--control-addr", p[1], "--outbound-addr", p[2], "--inbound-addr", p[3]}
	}
	inPorts, outPorts, bind := a[1:5], a[5:9], a[9]
	inEnv, err := env(serverWorkload)
	if err != nil {
		return nil, err
	}
	if pr.in, err = start("proxy-in", inEnv, inPorts[0],
		append(append([]string{proxyBin}, ports(inPorts)...), "--inbound-forward", backend)...); err != nil {
		return nil, err
	}
	if err := pr.in.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	outEnv, err := env(clientWorkload)
	if err != nil {
		return nil, err
	}
	if pr.out, err = start("proxy-out", outEnv, outPorts[0],
		append(append([]string{proxyBin}, ports(outPorts)...),
			"--dst", authority+"=weft://"+serverWorkload.Identity()+"@"+inPorts[3],
			"--bind", bind+"="+authority)...); err != nil {
		return nil, err
	}
	if err := pr.out.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	pr.url = "http://" + bind + path
	if err := harness.WaitHTTP(pr.url, 15*time.Second); err != nil {
		return nil, fmt.Errorf("through the pair: %w", err)
	}
	return pr, nil
}
