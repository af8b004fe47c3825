package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/internal/serving"
)

// targets in report order; "direct" first, as the baseline.
func targets() []target {
	all := []target{
		{name: "direct", start: func(b *bench) (string, []*proc, error) { return b.url(b.backend), nil, nil }},
		{name: "haproxy", start: startHAProxy, note: "1 thread, http mode, keep-alive to the backend"},
		{name: "nginx", start: startNginx, note: "1 worker, upstream keepalive 64"},
		{name: "httputil.ReverseProxy", start: startNaive, note: "Go's ReverseProxy, MaxIdleConnsPerHost raised to 64"},
		{name: "weft-proxy", start: startWeft, note: "single hop, explicit mode"},
		{name: "haproxy pair", start: startHAProxyPair, note: "two haproxy, 1 thread each, http mode, keep-alive on both hops (both on CPU 1)"},
		{name: "weft-proxy pair", start: startWeftPair, note: "outbound proxy → HTTP/1, pooled → inbound proxy (both on CPU 1)"},
		// Issue 17's layouts in two network namespaces (pairs.go).
		{name: "direct (netns)", base: "direct (netns)", start: nsDirect(nsHTTPPort), note: "fortio in the client namespace → backend in the server namespace, no proxies"},
		{name: "haproxy pair (netns)", start: nsHAProxyPair(false, false, false), base: "direct (netns)", note: "one haproxy per namespace, 1 thread each, keep-alive on both hops, linkerd-init's rules in both (as UID 2102, the client addressing the server's IP:port)"},
		{name: "haproxy pair (netns) without rules", start: nsHAProxyPair(false, false, true), base: "direct (netns)", note: "the same without the rules (the client addressing the outbound haproxy): what the rules cost"},
		{name: "weft-proxy pair (netns)", start: nsWeftPair(nsHTTPPort), base: "direct (netns)", note: "linkerd-init's rules, each proxy with no arguments (transparent), no identity"},
		{name: "haproxy TLS pair (netns)", start: nsHAProxyPair(true, false, false), base: "direct (netns)", note: "TLS between the two haproxys (verified, http-reuse always)"},
		{name: "weft-proxy mTLS pair (netns)", start: nsWeftMTLSPair(nsHTTPPort), base: "direct (netns)", note: "as the pair, with identity: local identity + destination services, mTLS between the proxies (checked in the server's metrics)"},
		{name: "h2 direct (netns)", kind: kindH2, base: "h2 direct (netns)", start: nsDirect(nsHTTPPort), note: "h2load → fortio's h2c, no proxies"},
		{name: "haproxy h2 TLS pair (netns)", kind: kindH2, start: nsHAProxyPair(true, true, false), base: "h2 direct (netns)", note: "haproxy h2 mode: h2c in, h2 over TLS (ALPN) between them, h2c to the backend"},
		{name: "weft-proxy h2 mTLS pair (netns)", kind: kindH2, start: nsWeftMTLSPair(nsHTTPPort), base: "h2 direct (netns)", note: "h2load through the mTLS pair"},
		{name: "opaque direct (netns)", kind: kindBulk, base: "opaque direct (netns)", start: nsDirect(nsBulkPort), note: "tcpbulk across the veth, no proxies"},
		{name: "haproxy opaque pair (netns)", kind: kindBulk, base: "opaque direct (netns)", start: nsHAProxyTCPPair(false), note: "one haproxy per namespace, 1 thread each, tcp mode, option splice-auto"},
		{name: "haproxy opaque TLS pair (netns)", kind: kindBulk, base: "opaque direct (netns)", start: nsHAProxyTCPPair(true), note: "as the haproxy opaque pair, with verified TLS between them"},
		{name: "weft-proxy opaque pair (netns)", kind: kindBulk, base: "opaque direct (netns)", start: nsWeftPair(nsBulkPort), note: "through the pair without identity (not HTTP: opaque after detection)"},
		{name: "weft-proxy opaque mTLS pair (netns)", kind: kindBulk, base: "opaque direct (netns)", start: nsWeftMTLSPair(nsBulkPort), note: "through the mTLS pair, port marked opaque by the destination service (opaque transport)"},
		{name: "weft-proxy mTLS handshakes (netns)", kind: kindHandshake, start: nsWeftMTLSPair(nsBulkPort), note: "new connections to the opaque port through the mTLS pair: one mTLS connection between the proxies each"},
	}
	// -baseline: each weft layout again with another binary, right after it.
	var out []target
	for _, t := range all {
		out = append(out, t)
		if strings.HasPrefix(t.name, "weft-proxy") {
			start := t.start
			bt := t
			bt.name, bt.note = t.name+" (baseline)", "the -baseline binary"
			bt.start = func(b *bench) (string, []*proc, error) {
				if b.o.baseline == "" {
					return "", nil, errNoBaseline
				}
				bb := *b
				bb.weftBin = b.o.baseline
				url, procs, err := start(&bb)
				// The copy's layout state (namespaces, cleanups) is b's.
				b.nsSeq, b.clientNS, b.cleanups, b.verify = bb.nsSeq, bb.clientNS, bb.cleanups, bb.verify
				return url, procs, err
			}
			out = append(out, bt)
		}
	}
	return out
}

// errNoBaseline skips the baseline rows when -baseline is not given.
var errNoBaseline = errors.New("no -baseline binary")

func (b *bench) url(hostport string) string {
	return fmt.Sprintf("http://%s/echo?size=%d", hostport, b.o.size)
}

// proxyCPU is where proxies run; the load generator and backend use CPU 0.
const proxyCPU = 1

func startHAProxy(b *bench) (string, []*proc, error) {
	addr, p, err := b.haproxy("haproxy", b.backend)
	if err != nil {
		return "", nil, err
	}
	return b.url(addr), []*proc{p}, nil
}

// startHAProxyPair chains two haproxy processes, as the weft pair chains
// an outbound and an inbound proxy.
func startHAProxyPair(b *bench) (string, []*proc, error) {
	inAddr, in, err := b.haproxy("haproxy-in", b.backend)
	if err != nil {
		return "", nil, err
	}
	addr, out, err := b.haproxy("haproxy-out", inAddr)
	if err != nil {
		in.stop()
		return "", nil, err
	}
	return b.url(addr), []*proc{out, in}, nil
}

// haproxy starts one haproxy (1 thread, http mode, keep-alive) in front of
// backend and returns its listening address.
func (b *bench) haproxy(name, backend string) (string, *proc, error) {
	addr, err := harness.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	p, err := b.haproxyIn("", name, addr, "", backend, "")
	if err != nil {
		return "", nil, err
	}
	return addr, p, nil
}

func startNginx(b *bench) (string, []*proc, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, fmt.Errorf("nginx not installed (apt-get install nginx-light)")
	}
	addr, err := harness.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	prefix := filepath.Join(b.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return "", nil, err
	}
	cfg := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  upstream be { server %[3]s; keepalive 64; }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, prefix, addr, b.backend)
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	p, err := startProc(b.dir, "nginx", proxyCPU, bin, "-p", prefix, "-c", path)
	if err != nil {
		return "", nil, err
	}
	return b.url(addr), []*proc{p}, nil
}

func startNaive(b *bench) (string, []*proc, error) {
	addr, err := harness.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	p, err := startProc(b.dir, "naive", proxyCPU, filepath.Join(b.bin, "naiveproxy"), "-listen", addr, "-target", "http://"+b.backend)
	if err != nil {
		return "", nil, err
	}
	return b.url(addr), []*proc{p}, nil
}

// weft starts one weft-proxy with its own loopback ports plus extra flags.
func (b *bench) weft(name string, extra ...string) (*proc, map[string]string, error) {
	bin := b.weftBin
	if bin == "" {
		bin = filepath.Join(b.bin, "weft-proxy")
	}
	// Every listener on port 0, reported in the address file: no port is
	// picked in advance for a fortio connection to take first.
	addrFile := filepath.Join(b.dir, name+".addrs.json")
	os.Remove(addrFile)
	args := append([]string{bin, "--log-level", "warn", "--addr-file", addrFile,
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0"}, extra...)
	var env []string
	var pprofAddr string
	if b.o.profile != "" && b.weftBin == "" {
		a, err := harness.FreeAddr()
		if err != nil {
			return nil, nil, err
		}
		pprofAddr = a
		env = []string{"WEFT_PPROF_ADDR=" + a}
	}
	p, err := startProcEnv(b.dir, name, proxyCPU, env, args...)
	if err != nil {
		return nil, nil, err
	}
	p.pprof = pprofAddr
	addrs, err := serving.ReadAddrFile(addrFile, 10*time.Second, p.done)
	if err == nil {
		err = harness.WaitHTTP("http://"+addrs["admin"]+"/ready", 10*time.Second)
	}
	if err != nil {
		p.stop()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, addrs, nil
}

func startWeft(b *bench) (string, []*proc, error) {
	p, addrs, err := b.weft("weft", "--dst", "backend:80="+b.backend, "--bind", "127.0.0.1:0=backend:80")
	if err != nil {
		return "", nil, err
	}
	return b.url(addrs["bind backend:80"]), []*proc{p}, nil
}

func startWeftPair(b *bench) (string, []*proc, error) {
	in, inAddrs, err := b.weft("weft-in", "--inbound-forward", b.backend)
	if err != nil {
		return "", nil, err
	}
	out, outAddrs, err := b.weft("weft-out", "--dst", "backend:80=weft://"+inAddrs["inbound"], "--bind", "127.0.0.1:0=backend:80")
	if err != nil {
		in.stop()
		return "", nil, err
	}
	return b.url(outAddrs["bind backend:80"]), []*proc{out, in}, nil
}
