package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// launcher starts the control plane and the replicas.
type launcher struct {
	cfg              Config
	sup              *supervisor
	dir              string
	proxyBin, ctlBin string
	svcs             []service
	reps             []*replica
	ctl              [4]string // identity, its admin, destination, its admin
	transparent      bool
}

func (l *launcher) write(name, content string, mode os.FileMode) (string, error) {
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
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
	idAddr, idAdmin, dstAddr, dstAdmin := l.ctl[0], l.ctl[1], l.ctl[2], l.ctl[3]
	p, err := l.sup.start("identity", nil, l.ctlBin, "identity", "--addr", idAddr, "--admin-addr", idAdmin,
		"--identity-trust-anchors-file", paths["ca.crt"], "--static-tokens", paths["tokens"],
		"--issuer-cert", paths["issuer.crt"], "--issuer-key", paths["issuer.key"])
	if err != nil {
		return nil, nil, err
	}
	if err := waitReady(ctx, p, idAdmin); err != nil {
		return nil, nil, err
	}
	started(p, idAdmin)
	if p, err = l.sup.start("destination", nil, l.ctlBin, "destination", "--registry", paths["registry.yaml"],
		"--addr", dstAddr, "--admin-addr", dstAdmin, "--identity-addr", idAddr, "--identity-trust-anchors-file", paths["ca.crt"],
		"--identity-token-file", paths["destination.token"]); err != nil {
		return nil, nil, err
	}
	if err := waitReady(ctx, p, dstAdmin); err != nil {
		return nil, nil, err
	}
	started(p, dstAdmin)

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
		tokenFile, err := l.write(r.name+".token", r.token, 0o600)
		if err != nil {
			return nil, nil, err
		}
		env := []string{
			compat.EnvIdentityLocalName + "=" + identity(r.svc.name),
			compat.EnvIdentitySvcAddr + "=" + idAddr,
			compat.EnvIdentitySvcName + "=" + fmt.Sprintf(compat.IdentityServiceNameFormat, compat.DefaultControlPlaneNamespace, compat.DefaultControlPlaneNamespace, trustDomain),
			compat.EnvIdentityTokenFile + "=" + tokenFile,
			compat.EnvTrustAnchors + "=" + string(root.CertPEM),
			compat.EnvDestinationSvcAddr + "=" + dstAddr,
			compat.EnvDestinationSvcName + "=" + fmt.Sprintf(compat.DestinationServiceNameFormat, compat.DefaultControlPlaneNamespace, compat.DefaultControlPlaneNamespace, trustDomain),
		}
		args := []string{"--shutdown-grace", "3s"}
		bin := proxyBin
		if l.transparent {
			if err := os.Chown(tokenFile, compat.ProxyUID, compat.ProxyUID); err != nil {
				return nil, nil, err
			}
			uid := strconv.Itoa(compat.ProxyUID)
			bin = "ip"
			args = append([]string{"netns", "exec", r.ns, "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", proxyBin}, args...)
		} else {
			args = append(args, "--admin-addr", r.admin, "--control-addr", r.control, "--outbound-addr", r.outbound, "--inbound-addr", r.inbound)
			if r.app != "" {
				args = append(args, "--inbound-forward", r.app)
			}
			for listen, target := range r.binds {
				args = append(args, "--bind", listen+"="+target)
			}
		}
		pp, err := l.sup.start(r.name+"-proxy", env, bin, args...)
		if err != nil {
			return nil, nil, err
		}
		if err := waitReady(ctx, pp, r.admin); err != nil {
			return nil, nil, err
		}
		started(pp, r.admin)
		app := l.appCommand(r)
		ap, err := l.sup.start(r.name, nil, app[0], app[1:]...)
		if err != nil {
			return nil, nil, err
		}
		started(ap, "")
		if r.svc.role == "bot" {
			bot = ap
		}
	}
	return bot, infos, nil
}

// appCommand is the command line of r's app.
func (l *launcher) appCommand(r *replica) []string {
	args := []string{l.cfg.Self, "demo", "app", "--role", r.svc.role}
	if l.transparent {
		args = append([]string{"ip", "netns", "exec", r.ns}, args...)
	}
	switch r.svc.role {
	case "bot":
		args = append(args, "--target", r.urlFor(l.svcs, "web"), "--rate", strconv.FormatFloat(l.cfg.Rate, 'f', -1, 64))
	case "web":
		args = append(args, "--listen", r.app, "--emoji", r.urlFor(l.svcs, "emoji"), "--voting", r.urlFor(l.svcs, "voting"))
	case "emoji":
		args = append(args, "--listen", r.app)
		if r.slow {
			args = append(args, "--delay", r.svc.slow.String())
		}
	case "voting":
		args = append(args, "--listen", r.app, "--fail-rate", strconv.FormatFloat(r.svc.failRate, 'f', -1, 64))
	}
	return args
}
