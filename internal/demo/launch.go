package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/internal/serving"
)

// launcher starts the control plane and the replicas.
type launcher struct {
	cfg              Config
	sup              *supervisor
	dir              string
	proxyBin, ctlBin string
	svcs             []service
	reps             []*replica
	transparent      bool
}

func (l *launcher) write(name, content string, mode os.FileMode) (string, error) {
	// Written beside and renamed into place: a reader (the destination
	// service polling its registry) never sees a half-written file.
	p := filepath.Join(l.dir, name)
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return p, nil
}

// startAll starts the control plane, then every replica (servers first,
// the bot last), each ready before the next; it returns the bot's app.
func (l *launcher) startAll(ctx context.Context) (*proc, []ProcessInfo, error) {
	now := time.Now()
	root, err := pki.NewRoot(compat.TrustAnchorCNPrefix+trustDomain, now.Add(-time.Minute), 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	issuer, err := pki.NewIssuer(root, compat.IssuerCNPrefix+trustDomain, now.Add(-time.Minute), 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	// The destination service has its own certificate (mTLS with the
	// proxies), for the linkerd-destination ServiceAccount's token.
	dstToken, err := newToken()
	if err != nil {
		return nil, nil, err
	}
	dstTokens := fmt.Sprintf("%s %s/%s\n", dstToken, compat.DefaultControlPlaneNamespace, compat.DestinationComponent)
	paths := map[string]string{}
	// In explicit mode the registry has no endpoints yet: the proxies
	// report where they listen as they start (publishRegistry).
	for name, content := range map[string]string{"ca.crt": string(root.CertPEM), "issuer.crt": string(issuer.CertPEM),
		"issuer.key": string(issuer.KeyPEM), "tokens": tokens(l.reps) + dstTokens, "registry.yaml": registry(l.svcs, l.reps, l.transparent),
		"destination.token": dstToken} {
		if paths[name], err = l.write(name, content, 0o600); err != nil {
			return nil, nil, err
		}
	}
	var infos []ProcessInfo
	started := func(p *proc, admin string) {
		infos = append(infos, ProcessInfo{Name: p.name, PID: p.cmd.Process.Pid, Admin: admin})
	}
	id, idAddr, idAdmin, err := l.startController(ctx, "identity", "8080", "9990",
		"--identity-trust-anchors-file", paths["ca.crt"], "--static-tokens", paths["tokens"],
		"--issuer-cert", paths["issuer.crt"], "--issuer-key", paths["issuer.key"])
	if err != nil {
		return nil, nil, err
	}
	started(id, idAdmin)
	dstArgs := []string{"--registry", paths["registry.yaml"], "--identity-addr", idAddr,
		"--identity-trust-anchors-file", paths["ca.crt"], "--identity-token-file", paths["destination.token"]}
	if !l.transparent {
		// The endpoints are written once the replicas' proxies say where
		// they listen: read them soon.
		dstArgs = append(dstArgs, "--registry-poll", "100ms")
	}
	dst, dstAddr, dstAdmin, err := l.startController(ctx, "destination", "8086", "9996", dstArgs...)
	if err != nil {
		return nil, nil, err
	}
	started(dst, dstAdmin)

	proxyBin := l.proxyBin
	if l.transparent {
		// The proxy runs as its own user (iptables lets its traffic out):
		// give it a copy of the binary and its token it can read.
		if err := os.Chmod(l.dir, 0o755); err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(l.proxyBin)
		if err != nil {
			return nil, nil, err
		}
		if proxyBin, err = l.write("weft-proxy", string(b), 0o755); err != nil {
			return nil, nil, err
		}
	}
	var bot *proc
	order := append(append([]*replica{}, l.reps[1:]...), l.reps[0]) // the bot (first service) last
	for _, r := range order {
		if r.svc.role == "bot" && !l.transparent {
			// Every server's endpoint is known now: the bot's traffic
			// starts once the destination service serves them.
			if err := l.publishRegistry(ctx, dst, paths["registry.yaml"], dstAdmin); err != nil {
				return nil, nil, err
			}
		}
		pp, ap, err := l.startReplica(ctx, r, proxyBin, root.CertPEM, idAddr, dstAddr)
		if err != nil {
			return nil, nil, err
		}
		started(pp, r.admin)
		started(ap, "")
		if r.svc.role == "bot" {
			bot = ap
		}
	}
	return bot, infos, nil
}

// startReplica starts r's proxy, ready, then its app. In explicit mode the
// proxy listens on loopback port 0 and reports its listeners, and a
// server's app gets a socket bound here before its proxy starts (the
// proxy's --inbound-forward), handed over as descriptor 3.
func (l *launcher) startReplica(ctx context.Context, r *replica, proxyBin string, trustAnchors []byte, idAddr, dstAddr string) (proxy, app *proc, err error) {
	tokenFile, err := l.write(r.name+".token", r.token, 0o600)
	if err != nil {
		return nil, nil, err
	}
	env := []string{
		compat.EnvIdentityLocalName + "=" + identity(r.svc.name),
		compat.EnvIdentitySvcAddr + "=" + idAddr,
		compat.EnvIdentitySvcName + "=" + fmt.Sprintf(compat.IdentityServiceNameFormat, compat.DefaultControlPlaneNamespace, compat.DefaultControlPlaneNamespace, trustDomain),
		compat.EnvIdentityTokenFile + "=" + tokenFile,
		compat.EnvTrustAnchors + "=" + string(trustAnchors),
		compat.EnvDestinationSvcAddr + "=" + dstAddr,
		compat.EnvDestinationSvcName + "=" + fmt.Sprintf(compat.DestinationServiceNameFormat, compat.DefaultControlPlaneNamespace, compat.DefaultControlPlaneNamespace, trustDomain),
	}
	args := []string{"--shutdown-grace", "3s"}
	var appSock *os.File // explicit mode, a server: the app's socket, handed over as descriptor 3
	if l.transparent {
		if err := os.Chown(tokenFile, compat.ProxyUID, compat.ProxyUID); err != nil {
			return nil, nil, err
		}
		uid := strconv.Itoa(compat.ProxyUID)
		args = append([]string{"netns", "exec", r.ns, "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", proxyBin}, args...)
		if proxy, err = l.sup.start(r.name+"-proxy", env, nil, "ip", args...); err != nil {
			return nil, nil, err
		}
	} else {
		if r.svc.server {
			if appSock, r.app, err = bindApp(); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.name, err)
			}
			defer appSock.Close() // the app has its own copy once started
			args = append(args, "--inbound-forward", r.app)
		}
		args = append(args, "--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0",
			"--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0")
		for _, name := range callees(r.svc.role) {
			args = append(args, "--bind", "127.0.0.1:0="+byName(l.svcs, name).target(false))
		}
		var addrs map[string]string
		if proxy, addrs, err = l.startListening(r.name+"-proxy", env, proxyBin, args...); err != nil {
			return nil, nil, err
		}
		if err := r.listening(l.svcs, addrs); err != nil {
			return nil, nil, err
		}
	}
	if err := waitReady(ctx, proxy, r.admin); err != nil {
		return nil, nil, err
	}
	cmd := l.appCommand(r)
	var extra []*os.File
	if appSock != nil {
		extra = []*os.File{appSock}
	}
	app, err = l.sup.start(r.name, nil, extra, cmd[0], cmd[1:]...)
	return proxy, app, err
}

// listening takes r's addresses from what its proxy reported (explicit
// mode): admin, inbound (its endpoint) and a listener per callee.
func (r *replica) listening(svcs []service, addrs map[string]string) error {
	r.admin, r.inbound, r.endpoint = addrs["admin"], addrs["inbound"], addrs["inbound"]
	if r.admin == "" || r.inbound == "" {
		return fmt.Errorf("%s's proxy did not report its admin and inbound listeners (%v)", r.name, addrs)
	}
	for _, name := range callees(r.svc.role) {
		t := byName(svcs, name).target(false)
		if r.binds[t] = addrs["bind "+t]; r.binds[t] == "" {
			return fmt.Errorf("%s's proxy did not report its listener for %s (%v)", r.name, t, addrs)
		}
	}
	return nil
}

// bindApp binds a loopback port for an app; the descriptor returned is to
// be handed to it.
func bindApp() (*os.File, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("binding the app's port: %w", err)
	}
	defer ln.Close() // File returns a copy
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, "", fmt.Errorf("the app's socket: %w", err)
	}
	return f, ln.Addr().String(), nil
}

// startController starts a weft-controller component and waits until it
// is ready. In transparent mode it listens on the namespaces' host address
// with the ports given; in explicit mode on loopback port 0, reported
// through --addr-file.
func (l *launcher) startController(ctx context.Context, component, port, adminPort string, args ...string) (p *proc, addr, admin string, err error) {
	if l.transparent {
		addr, admin = net.JoinHostPort(hostIP, port), net.JoinHostPort(hostIP, adminPort)
		p, err = l.sup.start(component, nil, nil, l.ctlBin, append([]string{component, "--addr", addr, "--admin-addr", admin}, args...)...)
	} else {
		var addrs map[string]string
		p, addrs, err = l.startListening(component, nil, l.ctlBin,
			append([]string{component, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)...)
		addr, admin = addrs[component+" gRPC server"], addrs[component+" admin server"]
		if err == nil && (addr == "" || admin == "") {
			err = fmt.Errorf("%s did not report its gRPC and admin servers (%v)", component, addrs)
		}
	}
	if err != nil {
		return nil, "", "", err
	}
	return p, addr, admin, waitReady(ctx, p, admin)
}

// startListening starts a Weft binary with --addr-file and returns the
// addresses it reports (waiting up to 30 s).
func (l *launcher) startListening(name string, env []string, bin string, args ...string) (*proc, map[string]string, error) {
	path := filepath.Join(l.dir, name+".addrs.json")
	p, err := l.sup.start(name, env, nil, bin, append(args, "--addr-file", path)...)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := serving.ReadAddrFile(path, 30*time.Second, p.done)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w:\n%s", name, err, p.tail())
	}
	return p, addrs, nil
}

// publishRegistry rewrites the registry with every endpoint known so far
// and waits (up to 30 s) until the destination service has loaded it: its
// destination_registry_loads_total passes the count before.
func (l *launcher) publishRegistry(ctx context.Context, dst *proc, path, dstAdmin string) error {
	before, err := promtext.SumAt(ctx, "http://"+dstAdmin+"/metrics", "destination_registry_loads_total")
	if err != nil {
		return err
	}
	if _, err := l.write(filepath.Base(path), registry(l.svcs, l.reps, l.transparent), 0o600); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := promtext.SumAt(ctx, "http://"+dstAdmin+"/metrics", "destination_registry_loads_total")
		if err == nil && n > before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the destination service did not load the registry within 30s (%v):\n%s", err, dst.tail())
		}
		select {
		case <-dst.done:
			return fmt.Errorf("destination exited (%v):\n%s", dst.err, dst.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// appCommand is the command line of r's app.
func (l *launcher) appCommand(r *replica) []string {
	args := []string{l.cfg.Self, "demo", "app", "--role", r.svc.role}
	listen := []string{"--listen-fd", "3"} // explicit mode: the socket startReplica hands over
	if l.transparent {
		args = append([]string{"ip", "netns", "exec", r.ns}, args...)
		listen = []string{"--listen", r.app}
	}
	switch r.svc.role {
	case "bot":
		args = append(args, "--target", r.urlFor(l.svcs, "web"), "--rate", strconv.FormatFloat(l.cfg.Rate, 'f', -1, 64))
	case "web":
		args = append(args, listen...)
		args = append(args, "--emoji", r.urlFor(l.svcs, "emoji"), "--voting", r.urlFor(l.svcs, "voting"))
	case "emoji":
		args = append(args, listen...)
		if r.slow {
			args = append(args, "--delay", r.svc.slow.String())
		}
	case "voting":
		args = append(args, listen...)
		args = append(args, "--fail-rate", strconv.FormatFloat(r.svc.failRate, 'f', -1, 64))
	}
	return args
}
