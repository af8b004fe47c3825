package inboundpolicy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
)

// Options shape the identities and defaults the index computes.
type Options struct {
	// ControllerNamespace and TrustDomain form ServiceAccount identities
	// (<sa>.<ns>.serviceaccount.identity.<controller-ns>.<trust-domain>).
	ControllerNamespace string
	TrustDomain         string
	// Default is the cluster's default inbound policy (proxy.defaultInboundPolicy).
	Default authz.DefaultPolicy
}

// Pod is what the index keeps of a pod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	Annotations     map[string]string
	// Ports maps container port names to numbers.
	Ports map[string]int32
	// Probes are the HTTP probe paths by port.
	Probes map[uint16][]string
}

// PodFrom extracts what the index needs of a pod.
func PodFrom(p *corev1.Pod) *Pod {
	out := &Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Annotations: p.Annotations,
		Ports: map[string]int32{}, Probes: map[uint16][]string{}}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				out.Ports[cp.Name] = cp.ContainerPort
			}
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name == compat.ProxyContainerName {
			continue
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil {
				continue
			}
			port := pr.HTTPGet.Port.IntValue()
			if name := pr.HTTPGet.Port.StrVal; name != "" {
				port = int(out.Ports[name])
			}
			if port <= 0 || port > 65535 {
				continue
			}
			path, _, _ := strings.Cut(pr.HTTPGet.Path, "?")
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			if !slices.Contains(out.Probes[uint16(port)], path) {
				out.Probes[uint16(port)] = append(out.Probes[uint16(port)], path)
			}
		}
	}
	return out
}

// Index holds the policy resources, pods and namespaces, and computes
// port policies from them. Safe for concurrent use.
type Index struct {
	o       Options
	mu      sync.RWMutex
	objs    map[string]map[string]*object // kind → namespace/name
	pods    map[string]*Pod
	nss     map[string]map[string]string // namespace → annotations
	changed chan struct{}
}

// NewIndex returns an empty index.
func NewIndex(o Options) *Index {
	if o.Default == "" {
		o.Default = authz.AllUnauthenticated
	}
	return &Index{o: o, objs: map[string]map[string]*object{}, pods: map[string]*Pod{},
		nss: map[string]map[string]string{}, changed: make(chan struct{})}
}

// Changed is closed at the next change.
func (x *Index) Changed() <-chan struct{} {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.changed
}

// notify must be called with mu held for writing.
func (x *Index) notify() {
	close(x.changed)
	x.changed = make(chan struct{})
}

// Upsert adds or replaces a policy resource of kind.
func (x *Index) Upsert(kind string, u *unstructured.Unstructured) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.objs[kind] == nil {
		x.objs[kind] = map[string]*object{}
	}
	o := newObject(kind, u)
	x.objs[kind][o.key()] = o
	x.notify()
}

// Delete removes a policy resource.
func (x *Index) Delete(kind, namespace, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.objs[kind], namespace+"/"+name)
	x.notify()
}

// SetPod adds or replaces a pod; nil-safe DeletePod removes one.
func (x *Index) SetPod(p *Pod) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pods[p.Namespace+"/"+p.Name] = p
	x.notify()
}

// DeletePod removes a pod.
func (x *Index) DeletePod(namespace, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.pods, namespace+"/"+name)
	x.notify()
}

// SetNamespace records a namespace's annotations.
func (x *Index) SetNamespace(name string, annotations map[string]string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.nss[name] = annotations
	x.notify()
}

// DeleteNamespace forgets a namespace.
func (x *Index) DeleteNamespace(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.nss, name)
	x.notify()
}

// ErrNoPod is returned for a pod the index does not know (yet).
var ErrNoPod = fmt.Errorf("pod not found")

// Policy computes the inbound policy of a pod's port.
func (x *Index) Policy(namespace, pod string, port uint16) (*authz.PortPolicy, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	p := x.pods[namespace+"/"+pod]
	if p == nil {
		return nil, fmt.Errorf("%s/%s: %w", namespace, pod, ErrNoPod)
	}
	srv, invalid := x.serverFor(p, port)
	if srv == nil {
		return authz.ForDefault(x.defaultFor(p, port), p.Probes[port]), nil
	}
	if invalid {
		// Reported with an Event; until it is fixed nobody is authorized
		// (the kubelet's probes still are).
		return &authz.PortPolicy{Server: authz.Meta{Group: Group, Kind: "server", Name: srv.Name}, Default: authz.Deny,
			ProbePaths: p.Probes[port]}, nil
	}
	var spec serverSpec
	_ = srv.spec(&spec) // serverFor only returns Servers whose spec decodes
	access := authz.Deny
	if spec.AccessPolicy != "" {
		access = authz.DefaultPolicy(spec.AccessPolicy) // validated by serverFor
	}
	pp := &authz.PortPolicy{Server: authz.Meta{Group: Group, Kind: "server", Name: srv.Name}, Protocol: protocolOf(spec.ProxyProtocol),
		Default: access, Authorizations: x.serverAuthorizations(srv)}
	pp.Routes = x.routesFor(srv)
	// Probe paths: authorized only without routes (the matcher's rule),
	// exempt from rate limits always.
	pp.ProbePaths = p.Probes[port]
	pp.RateLimit = x.rateLimitFor(srv)
	return pp, nil
}

// defaultFor is the pod's default policy: its annotation, its
// namespace's, the cluster's; identity required on the annotated ports.
// An annotation that does not parse fails closed: an unknown default
// policy denies, unparseable require-identity ports require identity on
// every port.
func (x *Index) defaultFor(p *Pod, port uint16) authz.DefaultPolicy {
	d := x.o.Default
	for _, ann := range []map[string]string{x.nss[p.Namespace], p.Annotations} {
		if v, ok := ann[compat.AnnotationDefaultInboundPolicy]; ok {
			pd, err := authz.ParseDefaultPolicy(v)
			if err != nil {
				pd = authz.Deny
			}
			d = pd
		}
	}
	if v, ok := p.Annotations[compat.AnnotationRequireIdentityPorts]; ok {
		if ports, err := authz.ParsePorts(v); err != nil || ports[port] {
			d = authz.RequireIdentity(d)
		}
	}
	return d
}

func protocolOf(s string) authz.Protocol {
	switch authz.Protocol(s) {
	case authz.ProtocolHTTP1, authz.ProtocolHTTP2, authz.ProtocolGRPC, authz.ProtocolOpaque, authz.ProtocolTLS:
		return authz.Protocol(s)
	}
	return authz.ProtocolUnknown
}

// sorted returns the objects of kind in namespace, oldest first.
func (x *Index) sorted(kind, namespace string) []*object {
	var out []*object
	for _, o := range x.objs[kind] {
		if namespace == "" || o.Namespace == namespace {
			out = append(out, o)
		}
	}
	sortOldestFirst(out)
	return out
}

// ServerProtocol is the proxyProtocol of the Server that selects a pod's
// port, as the policy controller computes it (the oldest valid Server of
// the pod's namespace selecting it), from servers (Server objects, any
// namespace, any order): authz.ProtocolUnknown when none selects it or
// the one that does is invalid. The destination service uses it to mark
// opaque ports.
func ServerProtocol(servers []*unstructured.Unstructured, p *Pod, port uint16) authz.Protocol {
	var objs []*object
	for _, u := range servers {
		if u.GetNamespace() == p.Namespace {
			objs = append(objs, newObject(KindServer, u))
		}
	}
	sortOldestFirst(objs)
	srv, invalid := selectServer(objs, p, port)
	if srv == nil || invalid {
		return authz.ProtocolUnknown
	}
	var spec serverSpec
	_ = srv.spec(&spec) // selectServer only returns valid Servers
	return protocolOf(spec.ProxyProtocol)
}

func sortOldestFirst(out []*object) {
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(&out[j].Created) {
			return out[i].Created.Before(&out[j].Created)
		}
		return out[i].key() < out[j].key()
	})
}

// checkServer validates a Server.
func checkServer(o *object) (serverSpec, labels.Selector, error) {
	var spec serverSpec
	if err := o.spec(&spec); err != nil {
		return spec, nil, err
	}
	if spec.PodSelector == nil {
		return spec, nil, fmt.Errorf("spec.podSelector is required")
	}
	sel, err := metav1.LabelSelectorAsSelector(spec.PodSelector)
	if err != nil {
		return spec, nil, fmt.Errorf("spec.podSelector: %v", err)
	}
	if spec.Port.IntValue() == 0 && spec.Port.StrVal == "" || spec.Port.IntValue() > 65535 {
		return spec, nil, fmt.Errorf("spec.port %q: want a port number or a container port name", spec.Port.String())
	}
	if spec.AccessPolicy != "" {
		if _, err := authz.ParseDefaultPolicy(spec.AccessPolicy); err != nil {
			return spec, nil, fmt.Errorf("spec.accessPolicy: %v", err)
		}
	}
	return spec, sel, nil
}

// serverFor is the oldest Server in the pod's namespace selecting the
// pod and the port; invalid reports that it is one the controller cannot
// use. An invalid Server covers what it may have meant to cover (fail
// closed): the pods its selector matches, or every pod when the selector
// is unusable; the port it names, or every port when that is unusable.
func (x *Index) serverFor(p *Pod, port uint16) (srv *object, invalid bool) {
	return selectServer(x.sorted(KindServer, p.Namespace), p, port)
}

// selectServer is serverFor over Servers sorted oldest first.
func selectServer(servers []*object, p *Pod, port uint16) (srv *object, invalid bool) {
	for _, o := range servers {
		spec, sel, err := checkServer(o)
		if err != nil {
			if mayCover(o, p, port) {
				return o, true
			}
			continue
		}
		if !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if spec.Port.Type == 0 && spec.Port.IntValue() == int(port) ||
			spec.Port.StrVal != "" && p.Ports[spec.Port.StrVal] == int32(port) {
			return o, false
		}
	}
	return nil, false
}

// mayCover reports whether an invalid Server may have been meant to
// select the pod's port: any part that does not parse matches.
func mayCover(o *object, p *Pod, port uint16) bool {
	var spec serverSpec
	if err := o.spec(&spec); err != nil {
		return true
	}
	if spec.PodSelector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(spec.PodSelector); err == nil && !sel.Matches(labels.Set(p.Labels)) {
			return false
		}
	}
	switch {
	case spec.Port.Type == 0 && spec.Port.IntValue() > 0 && spec.Port.IntValue() <= 65535:
		return spec.Port.IntValue() == int(port)
	case spec.Port.Type != 0 && spec.Port.StrVal != "":
		n, ok := p.Ports[spec.Port.StrVal]
		return ok && n == int32(port)
	}
	return true // no usable port
}

// SelectsPods reports whether a Server selects at least one known pod.
func (x *Index) serverSelectsPods(o *object) bool {
	_, sel, err := checkServer(o)
	if err != nil {
		return false
	}
	for _, p := range x.pods {
		if p.Namespace == o.Namespace && sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

func (x *Index) saIdentity(name, namespace string) string {
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", name, namespace, x.o.ControllerNamespace, x.o.TrustDomain)
}
