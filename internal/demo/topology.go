package demo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// Namespace is the demo's namespace in identities and service names.
const Namespace = "emojivoto"

const (
	trustDomain  = "cluster.local"
	controllerNS = compat.DefaultControlPlaneNamespace
)

// service is one demo service: its replicas each run the app behind a proxy.
type service struct {
	name     string // also the ServiceAccount
	port     int    // the service port in its authority
	replicas int
	role     string
	server   bool          // other services call it (it has an inbound side)
	slow     time.Duration // added latency of its last replica
	failRate float64
	ip       string // transparent mode: the virtual service address
}

// services is the demo application: vote-bot → web → {emoji (3 replicas,
// one slow), voting (fails some requests)}.
func services(slow time.Duration, failRate float64) []service {
	svcs := []service{
		{name: "vote-bot", role: "bot", replicas: 1},
		{name: "web", port: 80, role: "web", replicas: 1, server: true},
		{name: "emoji", port: 8080, role: "emoji", replicas: 3, server: true, slow: slow},
		{name: "voting", port: 8080, role: "voting", replicas: 1, server: true, failRate: failRate},
	}
	for i := range svcs {
		svcs[i].ip = serviceIP(i)
	}
	return svcs
}

// target is the name clients use and the destination service knows: the
// service's authority in explicit mode, its virtual IP:port in transparent
// mode (where the proxy sees only the original destination).
func (s service) target(transparent bool) string {
	if transparent {
		return net.JoinHostPort(s.ip, strconv.Itoa(s.port))
	}
	return fmt.Sprintf("%s.%s.svc.%s:%d", s.name, Namespace, trustDomain, s.port)
}

// identity is the TLS identity of the service's proxies.
func identity(sa string) string {
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, Namespace, controllerNS, trustDomain)
}

// replica is one pod of a service: app and proxy with their addresses. In
// explicit mode the proxy binds port 0 and reports where (--addr-file), and
// the app serves on a socket the demo binds and hands over, so addresses are
// filled in as the replica starts.
type replica struct {
	svc      service
	name     string // web-0
	app      string // the app's listener (servers)
	inbound  string // the proxy's inbound listener
	admin    string
	endpoint string            // where clients' proxies send its traffic
	binds    map[string]string // explicit mode: target → the proxy's local listener for it
	token    string
	slow     bool
	ns       string // transparent mode: its network namespace
	podIP    string
}

// plan lays out every replica: addresses come from the processes as they
// start in explicit mode; in transparent mode each replica has a network
// namespace with the standard ports.
func plan(svcs []service, transparent bool) ([]*replica, error) {
	if transparent {
		return planPods(svcs)
	}
	var reps []*replica
	for _, s := range svcs {
		for i := range s.replicas {
			r := &replica{svc: s, name: fmt.Sprintf("%s-%d", s.name, i), binds: map[string]string{}}
			r.slow = s.slow > 0 && i == s.replicas-1
			var err error
			if r.token, err = newToken(); err != nil {
				return nil, err
			}
			reps = append(reps, r)
		}
	}
	return reps, nil
}

// planPods gives each replica a namespace and a pod address; its proxy
// keeps the standard ports.
func planPods(svcs []service) ([]*replica, error) {
	var reps []*replica
	for _, s := range svcs {
		for i := range s.replicas {
			n := len(reps)
			r := &replica{svc: s, name: fmt.Sprintf("%s-%d", s.name, i), slow: s.slow > 0 && i == s.replicas-1}
			r.ns = nsPrefix + r.name
			r.podIP = fmt.Sprintf("198.18.240.%d", podBase+n)
			r.admin = net.JoinHostPort(r.podIP, "4191")
			r.inbound = net.JoinHostPort(r.podIP, "4143")
			if s.server {
				r.app = net.JoinHostPort("0.0.0.0", strconv.Itoa(s.port))
				r.endpoint = net.JoinHostPort(r.podIP, strconv.Itoa(s.port))
			}
			var err error
			if r.token, err = newToken(); err != nil {
				return nil, err
			}
			reps = append(reps, r)
		}
	}
	return reps, nil
}

func callees(role string) []string {
	switch role {
	case "bot":
		return []string{"web"}
	case "web":
		return []string{"emoji", "voting"}
	}
	return nil
}

func byName(svcs []service, name string) service {
	for _, s := range svcs {
		if s.name == name {
			return s
		}
	}
	return service{}
}

// urlFor is the base URL through which r's app reaches service name.
func (r *replica) urlFor(svcs []service, name string) string {
	s := byName(svcs, name)
	if r.ns != "" {
		return "http://" + s.target(true)
	}
	if addr := r.binds[s.target(false)]; addr != "" {
		return "http://" + addr
	}
	return ""
}

// registry is the destination service's registry file for the replicas.
func registry(svcs []service, reps []*replica, transparent bool) string {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, s := range svcs {
		if !s.server {
			continue
		}
		fmt.Fprintf(&b, "- name: %q\n  labels: {dst_namespace: %s, dst_service: %s}\n", s.target(transparent), Namespace, s.name)
		if s.role == "voting" {
			// Votes are idempotent here: the client's proxy retries a
			// failed one (what a ServiceProfile's isRetryable says).
			b.WriteString("  routes:\n  - {name: GET /vote, method: GET, pathRegex: /vote, isRetryable: true}\n")
		}
		var eps []string
		for _, r := range reps {
			if r.svc.name == s.name && r.endpoint != "" { // explicit mode: known once its proxy started
				eps = append(eps, fmt.Sprintf("  - {addr: %q, meshed: true, identity: %s, labels: {dst_pod: %s, dst_deployment: %s}}\n",
					r.endpoint, identity(s.name), r.name, s.name))
			}
		}
		if len(eps) == 0 {
			b.WriteString("  endpoints: []\n")
			continue
		}
		b.WriteString("  endpoints:\n" + strings.Join(eps, ""))
	}
	return b.String()
}

// tokens is the identity controller's static token file.
func tokens(reps []*replica) string {
	var b strings.Builder
	for _, r := range reps {
		fmt.Fprintf(&b, "%s %s/%s\n", r.token, Namespace, r.svc.name)
	}
	return b.String()
}

func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
