package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/meshpair"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/netnspair"
	"github.com/weftmesh/weft/internal/promtext"
)

// The network-namespace layout (issue 17): a client and a server "pod",
// each its own network namespace, joined by a veth. The load generator
// runs in the client namespace, the backends (fortio on :8080, which also
// speaks h2c, and tcpbulk on :9000) in the server namespace. Meshed rows
// apply linkerd-init's rules in both namespaces with weft-proxy-init and
// start each weft-proxy with no arguments, as UID 2102, as in a pod; the
// mTLS rows add a local identity and destination service (bench/meshpair)
// in the server namespace. haproxy rows run one haproxy per namespace (1
// thread) in the same layout: the same rules, each haproxy as UID 2102
// (so its own connections pass them, as a proxy's do), the client
// addressing the server's IP:port; its outbound haproxy listens where the
// rules send outbound traffic (127.0.0.1:4140) and its inbound one where
// they send inbound (:4143). The rules cost every packet a conntrack
// lookup and NAT; one reference row runs without them.
const (
	nsClientIP   = "198.18.252.1"
	nsServerIP   = "198.18.252.2"
	nsHTTPPort   = "8080"
	nsBulkPort   = "9000"
	nsIdentity   = "8088" // the control plane's ports in the server namespace,
	nsDest       = "8086" // which its linkerd-init leaves alone
	nsHAProxyIn  = "4143"
	nsHAProxyOut = "127.0.0.1:4140"
	nsPprofAddr  = "127.0.0.1:6060" // -profile: inside each proxy's namespace
)

var (
	nsClient = meshpair.Workload{Namespace: "bench", ServiceAccount: "client"}
	nsServer = meshpair.Workload{Namespace: "bench", ServiceAccount: "server"}
)

// errNeedsRoot skips the namespace rows (said in the report).
var errNeedsRoot = errors.New("needs root (network namespaces and iptables): loopback pairs only")

// nsReady says whether the namespace rows can run here.
func nsReady() error {
	if os.Geteuid() != 0 {
		return errNeedsRoot
	}
	for _, tool := range []string{"ip", "setpriv", "curl", "iptables-legacy-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed: loopback pairs only", tool)
		}
	}
	return nil
}

// netns makes this target's namespaces with the backends; rules applies
// linkerd-init's rules (weft-proxy-init) in both, the server's ignoring
// the control plane's ports too. Everything goes at the target's cleanup.
func (b *bench) netns(rules bool) (*netnspair.Pair, error) {
	if err := nsReady(); err != nil {
		return nil, err
	}
	b.nsSeq++
	p, err := netnspair.Create(netnspair.Options{Name: fmt.Sprintf("b%d-%d", os.Getpid()%10000, b.nsSeq), ClientIP: nsClientIP, ServerIP: nsServerIP})
	if err != nil {
		return nil, err
	}
	b.cleanup(func() { p.Close() })
	b.clientNS = p.Client
	be, err := startProc(b.dir, "backend-ns", 0, netnspair.Exec(p.Server, b.o.fortio, "server", "-http-port", "0.0.0.0:"+nsHTTPPort,
		"-grpc-port", "disabled", "-redirect-port", "disabled")...)
	if err != nil {
		return nil, err
	}
	b.cleanup(be.stop)
	bulk, err := startProc(b.dir, "tcpbulk-ns", 0, netnspair.Exec(p.Server, filepath.Join(b.bin, "tcpbulk"), "-serve", "0.0.0.0:"+nsBulkPort)...)
	if err != nil {
		return nil, err
	}
	b.cleanup(bulk.stop)
	b.nsBulk = bulk
	if err := waitNS(p.Server, "http://127.0.0.1:"+nsHTTPPort+"/echo", 10*time.Second); err != nil {
		return nil, fmt.Errorf("backend in %s: %w", p.Server, err)
	}
	if rules {
		init := filepath.Join(b.bin, "weft-proxy-init")
		if _, err := netnspair.Run(p.Client, init); err != nil {
			return nil, err
		}
		ignore := make([]string, 0, 6)
		for _, port := range compat.DefaultIgnoredInboundPorts {
			ignore = append(ignore, strconv.Itoa(port))
		}
		ignore = append(ignore, nsIdentity, nsDest)
		if _, err := netnspair.Run(p.Server, init, "--inbound-ports-to-ignore", strings.Join(ignore, ",")); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// waitNS polls url with curl inside ns until it answers 200.
func waitNS(ns, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := netnspair.Run(ns, "curl", "-sf", "-o", "/dev/null", "--max-time", "2", url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s not answering 200 after %v: %v %s", url, ns, timeout, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// weftNS starts a weft-proxy in ns as a pod's: no arguments, UID 2102,
// env (identity) and GODEBUG=gctrace=1 (its GC pauses, on stderr).
func (b *bench) weftNS(name, ns string, env []string) (*proc, error) {
	bin := b.weftBin
	if bin == "" {
		bin = filepath.Join(b.bin, "weft-proxy")
	}
	uid := strconv.Itoa(compat.ProxyUID)
	args := netnspair.Exec(ns, "setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", bin)
	env = append(env, "GODEBUG=gctrace=1")
	profiled := b.o.profile != "" && b.weftBin == ""
	if profiled {
		env = append(env, "WEFT_PPROF_ADDR="+nsPprofAddr)
	}
	p, err := startProcEnv(b.dir, name, proxyCPU, env, args...)
	if err != nil {
		return nil, err
	}
	p.gcLog = filepath.Join(b.dir, name+".log")
	p.ns = ns
	if profiled {
		p.pprof, p.pprofNS = nsPprofAddr, ns
	}
	if err := waitNS(ns, fmt.Sprintf("http://127.0.0.1:%d/ready", compat.AdminPort), 30*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// nsDirect: the load generator straight to the backend across the veth.
func nsDirect(port string) func(b *bench) (string, []*proc, error) {
	return func(b *bench) (string, []*proc, error) {
		p, err := b.netns(false)
		if err != nil {
			return "", nil, err
		}
		return b.nsURL(p.ServerIP(), port), nil, nil
	}
}

// nsURL is the HTTP URL (fortio, h2load) or the host:port (tcpbulk) of a
// backend port.
func (b *bench) nsURL(ip, port string) string {
	if port == nsBulkPort {
		return net.JoinHostPort(ip, port)
	}
	return b.url(net.JoinHostPort(ip, port))
}

// nsWeftPair: both proxies transparent, no identity (issue 17's first
// layout); the client addresses the server pod's IP:port.
func nsWeftPair(port string) func(b *bench) (string, []*proc, error) {
	return func(b *bench) (string, []*proc, error) {
		p, err := b.netns(true)
		if err != nil {
			return "", nil, err
		}
		in, err := b.weftNS("weft-ns-in", p.Server, nil)
		if err != nil {
			return "", nil, err
		}
		out, err := b.weftNS("weft-ns-out", p.Client, nil)
		if err != nil {
			in.stop()
			return "", nil, err
		}
		return b.nsURL(p.ServerIP(), port), []*proc{out, in}, nil
	}
}

// nsWeftMTLSPair: both proxies transparent with identity, certificates
// from a local identity service, endpoints (meshed, their identity; :9000
// opaque) from a local destination service.
func nsWeftMTLSPair(port string) func(b *bench) (string, []*proc, error) {
	return func(b *bench) (string, []*proc, error) {
		p, err := b.netns(true)
		if err != nil {
			return "", nil, err
		}
		dir := filepath.Join(b.dir, fmt.Sprintf("cp-%d", b.nsSeq))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		ip := p.ServerIP()
		reg := fmt.Sprintf(`services:
- name: "%[1]s:%[2]s"
  labels: {dst_namespace: bench, dst_service: server}
  endpoints:
  - {addr: "%[1]s:%[2]s", meshed: true, identity: %[4]s, labels: {dst_pod: server-0}}
- name: "%[1]s:%[3]s"
  labels: {dst_namespace: bench, dst_service: server}
  opaque: true
  endpoints:
  - {addr: "%[1]s:%[3]s", meshed: true, identity: %[4]s, labels: {dst_pod: server-0}}
`, ip, nsHTTPPort, nsBulkPort, nsServer.Identity())
		cp, err := meshpair.Start(meshpair.Options{Controller: filepath.Join(b.bin, "weft-controller"), Dir: dir,
			IdentityAddr: net.JoinHostPort(ip, nsIdentity), IdentityAdmin: "127.0.0.1:9990",
			Registry: reg, DestinationAddr: net.JoinHostPort(ip, nsDest), DestinationAdmin: "127.0.0.1:9996",
			Wrap: netnspair.Exec(p.Server), Workloads: []meshpair.Workload{nsClient, nsServer}, TokenOwner: compat.ProxyUID})
		if err != nil {
			return "", nil, err
		}
		b.cleanup(cp.Stop)
		var procs []*proc
		for _, side := range []struct {
			name, ns string
			w        meshpair.Workload
		}{{"weft-mtls-in", p.Server, nsServer}, {"weft-mtls-out", p.Client, nsClient}} {
			env, err := cp.ProxyEnv(side.w)
			if err != nil {
				return "", nil, err
			}
			pr, err := b.weftNS(side.name, side.ns, env)
			if err != nil {
				for _, q := range procs {
					q.stop()
				}
				return "", nil, err
			}
			procs = append([]*proc{pr}, procs...)
		}
		b.verify = func() error { return b.checkMTLS(p.Server, port) }
		return b.nsURL(ip, port), procs, nil
	}
}

// checkMTLS fails unless the server's proxy counted inbound traffic as
// mTLS from the client's identity: the row measured what it says.
func (b *bench) checkMTLS(serverNS, port string) error {
	out, err := netnspair.Run(serverNS, "curl", "-sf", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/metrics", compat.AdminPort))
	if err != nil {
		return err
	}
	name := "request_total"
	if port == nsBulkPort {
		name = "tcp_open_total"
	}
	n, err := promtext.Sum(out, name, `direction="inbound"`, `tls="true"`, `client_id="`+nsClient.Identity()+`"`)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("the server's proxy counted no inbound %s with tls=\"true\" from %s: not mTLS", name, nsClient.Identity())
	}
	if port == nsBulkPort {
		return nil
	}
	// The mTLS connections (handshakes) between the proxies: pooled, as
	// many as the load's connections (16), never one per request.
	conns, err := promtext.Sum(out, "tcp_open_total", `direction="inbound"`, `peer="src"`, `tls="true"`, `client_id="`+nsClient.Identity()+`"`)
	if err != nil {
		return err
	}
	log.Printf("mTLS connections between the proxies: %.0f for %.0f requests", conns, n)
	if conns > 64 {
		return fmt.Errorf("%.0f mTLS connections between the proxies for %.0f requests from 16 connections: not pooled", conns, n)
	}
	return nil
}

// nsHAProxyPair: haproxy (1 thread) in each namespace, with linkerd-init's
// rules unless noRules; tls adds TLS between them (the server's
// certificate from a generated CA, verified, connections reused); h2 makes
// both hops HTTP/2 (h2c from the client, ALPN h2 between them, h2c to the
// backend).
func nsHAProxyPair(tls, h2, noRules bool) func(b *bench) (string, []*proc, error) {
	return func(b *bench) (string, []*proc, error) {
		p, err := b.netns(!noRules)
		if err != nil {
			return "", nil, err
		}
		var bindIn, serverOut, bindOut, serverIn string
		if h2 {
			bindOut, serverIn = "proto h2", "proto h2"
		}
		if tls {
			if bindIn, serverOut, err = b.haproxyTLS("haproxy", p.ServerIP()); err != nil {
				return "", nil, err
			}
			if h2 {
				bindIn += " alpn h2"
				serverOut += " alpn h2"
			}
		} else if h2 {
			bindIn, serverOut = "proto h2", "proto h2"
		}
		inAddr, upstream := haproxyAddrs(p, nsHTTPPort, noRules)
		in, err := b.haproxyIn(p.Server, "haproxy-ns-in", inAddr, bindIn, "127.0.0.1:"+nsHTTPPort, serverIn)
		if err != nil {
			return "", nil, err
		}
		out, err := b.haproxyIn(p.Client, "haproxy-ns-out", nsHAProxyOut, bindOut, upstream, serverOut)
		if err != nil {
			in.stop()
			return "", nil, err
		}
		if noRules {
			return b.url(nsHAProxyOut), []*proc{out, in}, nil
		}
		return b.nsURL(p.ServerIP(), nsHTTPPort), []*proc{out, in}, nil
	}
}

// haproxyAddrs: where the inbound haproxy listens and where the outbound
// one sends. With the rules, the outbound haproxy addresses the backend's
// own IP:port, as the client did, and the server's rules take it to :4143.
func haproxyAddrs(p *netnspair.Pair, port string, noRules bool) (inAddr, upstream string) {
	inAddr = net.JoinHostPort(p.ServerIP(), nsHAProxyIn)
	if noRules {
		return inAddr, inAddr
	}
	return inAddr, net.JoinHostPort(p.ServerIP(), port)
}

// haproxyIn starts one haproxy (1 thread, http mode, connections to the
// server reused) in namespace ns ("": this one).
func (b *bench) haproxyIn(ns, name, bind, bindOpts, server, serverOpts string) (*proc, error) {
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind %s %s
  default_backend be
backend be
  http-reuse always
  server s1 %s %s
`, bind, bindOpts, server, serverOpts)
	return b.startHAProxy(ns, name, cfg)
}

// nsHAProxyTCPPair: haproxy (1 thread) in each namespace in TCP mode to
// the bulk port, the best-known proxy's opaque pair: plaintext with
// `option splice-auto` (splice(2) where it pays), or tls: TLS between them
// (verified, as nsHAProxyPair's), which cannot splice.
func nsHAProxyTCPPair(tls bool) func(b *bench) (string, []*proc, error) {
	return func(b *bench) (string, []*proc, error) {
		p, err := b.netns(true)
		if err != nil {
			return "", nil, err
		}
		var bindIn, serverOut string
		if tls {
			if bindIn, serverOut, err = b.haproxyTLS("haproxy-tcp", p.ServerIP()); err != nil {
				return "", nil, err
			}
		}
		inAddr, upstream := haproxyAddrs(p, nsBulkPort, false)
		in, err := b.haproxyTCP(p.Server, "haproxy-tcp-in", inAddr, bindIn, "127.0.0.1:"+nsBulkPort, "")
		if err != nil {
			return "", nil, err
		}
		out, err := b.haproxyTCP(p.Client, "haproxy-tcp-out", nsHAProxyOut, "", upstream, serverOut)
		if err != nil {
			in.stop()
			return "", nil, err
		}
		return b.nsURL(p.ServerIP(), nsBulkPort), []*proc{out, in}, nil
	}
}

// haproxyTCP starts one haproxy (1 thread, tcp mode, splice-auto) in
// namespace ns.
func (b *bench) haproxyTCP(ns, name, bind, bindOpts, server, serverOpts string) (*proc, error) {
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tcp
  bind %s %s
  server s1 %s %s
`, bind, bindOpts, server, serverOpts)
	return b.startHAProxy(ns, name, cfg)
}

// haproxyTLS writes a certificate for the inbound haproxy at serverIP
// (name haproxy-in) and the CA that verifies it, and returns the bind
// options of the inbound and the server options of the outbound: verified
// TLS between the two. prefix names the files.
func (b *bench) haproxyTLS(prefix, serverIP string) (bindIn, serverOut string, err error) {
	ca, err := meshpair.NewCA()
	if err != nil {
		return "", "", err
	}
	chain, key, err := ca.ServerCert("haproxy-in", serverIP)
	if err != nil {
		return "", "", err
	}
	pemPath := filepath.Join(b.dir, fmt.Sprintf("%s-in-%d.pem", prefix, b.nsSeq))
	caPath := filepath.Join(b.dir, fmt.Sprintf("%s-ca-%d.crt", prefix, b.nsSeq))
	if err := os.WriteFile(pemPath, append(chain, key...), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(caPath, ca.TrustAnchorsPEM(), 0o644); err != nil {
		return "", "", err
	}
	return "ssl crt " + pemPath, "ssl verify required ca-file " + caPath + " verifyhost haproxy-in sni str(haproxy-in)", nil
}

// startHAProxy writes cfg and starts haproxy with it in namespace ns ("":
// this one), on the proxies' CPU. In a namespace it runs as the proxy's
// UID (set after it has bound its ports and read its certificate), which
// linkerd-init's rules let through, where there are rules.
func (b *bench) startHAProxy(ns, name, cfg string) (*proc, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy not installed (apt-get install haproxy)")
	}
	if ns != "" {
		uid := strconv.Itoa(compat.ProxyUID)
		cfg = strings.Replace(cfg, "global\n", "global\n  uid "+uid+"\n  gid "+uid+"\n", 1)
	}
	path := filepath.Join(b.dir, fmt.Sprintf("%s-%d.cfg", name, b.nsSeq))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	argv := []string{bin, "-db", "-f", path}
	if ns != "" {
		argv = netnspair.Exec(ns, argv...)
	}
	return startProc(b.dir, name, proxyCPU, argv...)
}
