package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
)

const (
	trustDomain = "cluster.local"
	namespace   = "soak"
	// authority is the logical destination the client calls through the
	// outbound proxy.
	authority = "backend.soak.svc.cluster.local:80"
)

// proxyIdentity is the mTLS identity of a proxy running as ServiceAccount sa.
func proxyIdentity(sa string) string {
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, namespace, compat.DefaultControlPlaneNamespace, trustDomain)
}

// pair is the meshed pair under test: a local identity service (static
// tokens, a CA generated here), fortio's server as the backend, an inbound
// proxy in front of it and an outbound proxy that reaches the inbound one
// over mTLS, requiring the server's identity.
type pair struct {
	identity, backend, in, out *proc
	url                        string // what the load generator calls
	procs                      []*proc
}

// proxies are the two proxies, outbound first.
func (pr *pair) proxies() []*proc { return []*proc{pr.out, pr.in} }

// stop stops everything the pair started, last started first.
func (pr *pair) stop() {
	for i := len(pr.procs) - 1; i >= 0; i-- {
		pr.procs[i].stop(5 * time.Second)
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
	// identity gRPC + admin, backend, inbound proxy's 4, outbound's 4 + bind.
	a, err := freeAddrs(13)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	root, err := pki.NewRoot(compat.TrustAnchorCNPrefix+trustDomain, now.Add(-time.Minute), 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("trust anchor: %w", err)
	}
	issuer, err := pki.NewIssuer(root, compat.IssuerCNPrefix+trustDomain, now.Add(-time.Minute), 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	clientToken, err := newToken()
	if err != nil {
		return nil, err
	}
	serverToken, err := newToken()
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"ca.crt": string(root.CertPEM), "issuer.crt": string(issuer.CertPEM), "issuer.key": string(issuer.KeyPEM),
		"tokens":       fmt.Sprintf("%s %s/client\n%s %s/server\n", clientToken, namespace, serverToken, namespace),
		"client.token": clientToken, "server.token": serverToken,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	idAddr := a[0]
	if pr.identity, err = start("identity", nil, a[1], ctlBin, "identity", "--addr", idAddr, "--admin-addr", a[1],
		"--identity-trust-anchors-file", filepath.Join(dir, "ca.crt"), "--static-tokens", filepath.Join(dir, "tokens"),
		"--issuer-cert", filepath.Join(dir, "issuer.crt"), "--issuer-key", filepath.Join(dir, "issuer.key")); err != nil {
		return nil, err
	}
	if err := pr.identity.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	backend := a[2]
	if pr.backend, err = start("backend", nil, "", fortio, "server", "-http-port", backend,
		"-grpc-port", "disabled", "-redirect-port", "disabled"); err != nil {
		return nil, err
	}
	if err := waitHTTP("http://"+backend+"/echo", 10*time.Second); err != nil {
		return nil, fmt.Errorf("fortio backend: %w", err)
	}
	env := func(sa string) []string {
		return []string{
			compat.EnvIdentityLocalName + "=" + proxyIdentity(sa),
			compat.EnvIdentitySvcAddr + "=" + idAddr,
			compat.EnvIdentitySvcName + "=" + fmt.Sprintf(compat.IdentityServiceNameFormat,
				compat.DefaultControlPlaneNamespace, compat.DefaultControlPlaneNamespace, trustDomain),
			compat.EnvIdentityTokenFile + "=" + filepath.Join(dir, sa+".token"),
			compat.EnvTrustAnchors + "=" + string(root.CertPEM),
			// Every collection's pauses in the log, for the GC pause percentiles.
			"GODEBUG=gctrace=1",
		}
	}
	ports := func(p []string) []string {
		return []string{"--log-level", "warn", "--admin-addr", p[0], "--control-addr", p[1], "--outbound-addr", p[2], "--inbound-addr", p[3]}
	}
	inPorts, outPorts, bind := a[3:7], a[7:11], a[11]
	if pr.in, err = start("proxy-in", env("server"), inPorts[0],
		append(append([]string{proxyBin}, ports(inPorts)...), "--inbound-forward", backend)...); err != nil {
		return nil, err
	}
	if err := pr.in.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	if pr.out, err = start("proxy-out", env("client"), outPorts[0],
		append(append([]string{proxyBin}, ports(outPorts)...),
			"--dst", authority+"=weft://"+proxyIdentity("server")+"@"+inPorts[3],
			"--bind", bind+"="+authority)...); err != nil {
		return nil, err
	}
	if err := pr.out.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	pr.url = "http://" + bind + path
	if err := waitHTTP(pr.url, 15*time.Second); err != nil {
		return nil, fmt.Errorf("through the pair: %w", err)
	}
	return pr, nil
}

func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
