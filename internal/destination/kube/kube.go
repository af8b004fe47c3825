// Package kube is the destination service's Kubernetes backend: client-go
// shared informers over Services, EndpointSlices, Pods, Namespaces and
// Nodes (for callers' zones), translated into destination snapshots. A
// target is a service authority (name.ns.svc.<cluster-domain>:port), a
// Service's ClusterIP:port, or a pod IP:port; anything else does not exist
// and is forwarded as addressed.
package kube

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/destination"
)

// Config says how names are formed.
type Config struct {
	ClusterDomain  string // cluster.local
	ControlPlaneNS string // linkerd
	TrustDomain    string // cluster.local
}

// Backend implements destination.Backend over informers.
type Backend struct {
	cfg        Config
	log        *slog.Logger
	services   listersv1.ServiceLister
	pods       listersv1.PodLister
	namespaces listersv1.NamespaceLister
	nodes      listersv1.NodeLister // names and zones only
	podsByIP   cache.Indexer
	svcByIP    cache.Indexer // services by ClusterIP
	slicesBySv cache.Indexer // EndpointSlices by namespace/service

	subs        *destination.Subscriptions[destination.Snapshot]
	profileSubs *destination.Subscriptions[destination.Profile]
	profiles    cache.GenericLister // ServiceProfiles; nil when the CRD is not served
	servers     cache.GenericLister // policy.linkerd.io Servers; nil when the CRD is not served
	kick        chan struct{}

	// What changed since the last refresh: services (namespace/name) and
	// namespaces (a pod or namespace changed: all of it).
	mu            sync.Mutex
	dirtyServices map[string]bool
	dirtyNS       map[string]bool
	serviceEvent  bool // a Service came or went: targets that did not resolve may now
	zoneEvent     bool // a node's zone changed: every watch filters again
}

var _ destination.Backend = (*Backend)(nil)

const (
	podIPIndex     = "podIP"
	clusterIPIndex = "clusterIP"
	serviceIndex   = "service"
)

// New builds the backend's informers on factory; start the factory and wait
// for its caches before serving, then call Run.
func New(factory informers.SharedInformerFactory, cfg Config, log *slog.Logger) (*Backend, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{cfg: cfg, log: log, kick: make(chan struct{}, 1), dirtyServices: map[string]bool{}, dirtyNS: map[string]bool{}}
	b.subs = destination.NewSubscriptions(b.snapshot)
	b.profileSubs = destination.NewSubscriptions(func(target string) destination.Profile {
		p, _ := b.Profile(target)
		return p
	})
	svc := factory.Core().V1().Services()
	pods := factory.Core().V1().Pods()
	ns := factory.Core().V1().Namespaces()
	es := factory.Discovery().V1().EndpointSlices()
	// Pods are most of what the caches hold: keep only the fields the
	// backend reads (names, labels, Linkerd's annotations, service account,
	// IPs).
	if err := pods.Informer().SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod transform: %w", err)
	}
	if err := pods.Informer().AddIndexers(cache.Indexers{podIPIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Status.PodIP == "" {
			return nil, nil
		}
		ips := []string{}
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return ips, nil
	}}); err != nil {
		return nil, fmt.Errorf("pod IP index: %w", err)
	}
	if err := svc.Informer().AddIndexers(cache.Indexers{clusterIPIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return nil, nil
		}
		var ips []string
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				ips = append(ips, ip)
			}
		}
		return ips, nil
	}}); err != nil {
		return nil, fmt.Errorf("ClusterIP index: %w", err)
	}
	if err := es.Informer().AddIndexers(cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		e, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || e.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{e.Namespace + "/" + e.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return nil, fmt.Errorf("EndpointSlice index: %w", err)
	}
	if err := b.watchNodes(factory.Core().V1().Nodes()); err != nil {
		return nil, err
	}
	b.services, b.pods, b.namespaces = svc.Lister(), pods.Lister(), ns.Lister()
	b.podsByIP = pods.Informer().GetIndexer()
	b.svcByIP, b.slicesBySv = svc.Informer().GetIndexer(), es.Informer().GetIndexer()
	handler := func(mark func(obj any)) cache.ResourceEventHandlerFuncs {
		on := func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			b.mu.Lock()
			mark(obj)
			b.mu.Unlock()
			b.changed()
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, n any) { on(n) }, DeleteFunc: on}
	}
	nsOf := func(obj any) string {
		if m, ok := obj.(metav1.Object); ok {
			return m.GetNamespace()
		}
		return ""
	}
	for inf, mark := range map[cache.SharedIndexInformer]func(any){
		es.Informer(): func(obj any) {
			if e, ok := obj.(*discoveryv1.EndpointSlice); ok {
				b.dirtyServices[e.Namespace+"/"+e.Labels[discoveryv1.LabelServiceName]] = true
			}
		},
		svc.Informer(): func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				b.dirtyServices[m.GetNamespace()+"/"+m.GetName()] = true
			}
			b.serviceEvent = true
		},
		pods.Informer(): func(obj any) { b.dirtyNS[nsOf(obj)] = true },
		ns.Informer(): func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				b.dirtyNS[m.GetName()] = true
			}
		},
	} {
		if _, err := inf.AddEventHandler(handler(mark)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// NewFromClient is New with its own informer factory, started and synced;
// with dyn it also reads ServiceProfiles and Servers (when the cluster
// serves them).
func NewFromClient(client kubernetes.Interface, dyn dynamic.Interface, cfg Config, log *slog.Logger, stop <-chan struct{}) (*Backend, error) {
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	b, err := New(f, cfg, log)
	if err != nil {
		return nil, err
	}
	f.Start(stop)
	for typ, ok := range f.WaitForCacheSync(stop) {
		if !ok {
			return nil, fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	if dyn != nil {
		if err := b.watchProfiles(client, dyn, stop); err != nil {
			return nil, fmt.Errorf("ServiceProfiles: %w", err)
		}
		if err := b.watchServers(client, dyn, stop); err != nil {
			return nil, fmt.Errorf("Servers: %w", err)
		}
	}
	go b.Run(stop)
	return b, nil
}

// changed coalesces informer events into one recomputation.
func (b *Backend) changed() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Run recomputes, after changes and until stop closes, the subscriptions
// the changes can affect: those of a changed Service or EndpointSlice, all
// of a namespace where a pod or the namespace changed, and the targets that
// resolve to no Service when Services came or went; every endpoint watch
// when a node's zone changed (streams filter by their caller's zone). The
// server's per-stream differ drops what did not change.
func (b *Backend) Run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-b.kick:
		}
		b.mu.Lock()
		services, namespaces, serviceEvent, zoneEvent := b.dirtyServices, b.dirtyNS, b.serviceEvent, b.zoneEvent
		b.dirtyServices, b.dirtyNS, b.serviceEvent, b.zoneEvent = map[string]bool{}, map[string]bool{}, false, false
		b.mu.Unlock()
		affected := func(target string) bool {
			svc, _, ok := b.service(target)
			if !ok {
				return serviceEvent || len(namespaces) > 0 // a pod IP, or nothing known yet
			}
			return services[svc.Namespace+"/"+svc.Name] || namespaces[svc.Namespace]
		}
		if zoneEvent {
			b.subs.RefreshAll()
		} else {
			b.subs.Refresh(affected)
		}
		b.profileSubs.Refresh(affected)
	}
}

// Subscribe implements destination.Backend.
func (b *Backend) Subscribe(target string, update func(destination.Snapshot)) (func(), error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("target %q is not host:port", target)
	}
	return b.subs.Add(target, update), nil
}

// Profile implements destination.Backend.
func (b *Backend) Profile(target string) (destination.Profile, error) {
	svc, port, ok := b.service(target)
	if !ok {
		return destination.Profile{}, nil
	}
	fqdn := fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, b.cfg.ClusterDomain)
	p := destination.Profile{FullyQualifiedName: fqdn, Opaque: b.opaque(svc, nil, port.Port)}
	b.serviceProfile(svc.Namespace, fqdn, &p)
	return p, nil
}

// SubscribeProfile implements destination.ProfileSubscriber.
func (b *Backend) SubscribeProfile(target string, update func(destination.Profile)) (func(), error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("target %q is not host:port", target)
	}
	return b.profileSubs.Add(target, update), nil
}

// service finds the Service and port a target names.
func (b *Backend) service(target string) (*corev1.Service, *corev1.ServicePort, bool) {
	host, portStr, _ := net.SplitHostPort(target)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, false
	}
	var svc *corev1.Service
	if ip := net.ParseIP(host); ip != nil {
		if objs, _ := b.svcByIP.ByIndex(clusterIPIndex, host); len(objs) > 0 {
			svc, _ = objs[0].(*corev1.Service)
		}
	} else {
		suffix := ".svc." + b.cfg.ClusterDomain
		name, ns, ok := strings.Cut(strings.TrimSuffix(host, suffix), ".")
		if !ok || strings.Contains(ns, ".") {
			return nil, nil, false
		}
		svc, _ = b.services.Services(ns).Get(name)
	}
	if svc == nil {
		return nil, nil, false
	}
	for i := range svc.Spec.Ports {
		if int(svc.Spec.Ports[i].Port) == port {
			return svc, &svc.Spec.Ports[i], true
		}
	}
	return nil, nil, false
}

// snapshot computes a target's endpoints from the caches.
func (b *Backend) snapshot(target string) destination.Snapshot {
	if svc, port, ok := b.service(target); ok {
		return b.serviceSnapshot(svc, port)
	}
	host, portStr, _ := net.SplitHostPort(target)
	port, _ := strconv.Atoi(portStr)
	if objs, _ := b.podsByIP.ByIndex(podIPIndex, host); len(objs) > 0 {
		pod := objs[0].(*corev1.Pod)
		e := b.endpoint(pod, target, int32(port), "")
		return destination.Snapshot{Exists: true, Endpoints: []destination.Endpoint{e}, Labels: map[string]string{"dst_namespace": pod.Namespace}}
	}
	return destination.Snapshot{Exists: false}
}

func (b *Backend) serviceSnapshot(svc *corev1.Service, port *corev1.ServicePort) destination.Snapshot {
	snap := destination.Snapshot{Exists: true, Labels: map[string]string{"dst_namespace": svc.Namespace, "dst_service": svc.Name}}
	objs, _ := b.slicesBySv.ByIndex(serviceIndex, svc.Namespace+"/"+svc.Name)
	seen := map[string]bool{}
	for _, obj := range objs {
		sl, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		var targetPort int32 = -1
		for _, p := range sl.Ports {
			if p.Name != nil && *p.Name == port.Name && p.Port != nil {
				targetPort = *p.Port
			}
		}
		if targetPort < 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			serving := ep.Conditions.Serving != nil && *ep.Conditions.Serving
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			if !ready && !(serving && terminating) {
				continue
			}
			for _, addr := range ep.Addresses {
				hp := net.JoinHostPort(addr, strconv.Itoa(int(targetPort)))
				if seen[hp] {
					continue
				}
				seen[hp] = true
				var pod *corev1.Pod
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					pod, _ = b.pods.Pods(svc.Namespace).Get(ep.TargetRef.Name)
				}
				zone := ""
				if ep.Zone != nil {
					zone = *ep.Zone
				}
				e := b.endpoint(pod, hp, targetPort, zone)
				e.Terminating = !ready && terminating
				if ep.Hints != nil {
					for _, z := range ep.Hints.ForZones {
						e.ForZones = append(e.ForZones, z.Name)
					}
				}
				if b.opaque(svc, pod, port.Port) {
					b.markOpaque(&e, pod)
				}
				snap.Endpoints = append(snap.Endpoints, e)
			}
		}
	}
	return snap
}

// endpoint describes addr served by pod (which may be nil).
func (b *Backend) endpoint(pod *corev1.Pod, addr string, port int32, zone string) destination.Endpoint {
	e := destination.Endpoint{Addr: addr, Zone: zone, Labels: map[string]string{}}
	if zone != "" {
		e.Labels["dst_zone"] = zone
	}
	if pod == nil {
		return e
	}
	e.Labels["dst_pod"] = pod.Name
	for k, v := range pod.Labels {
		if kind, ok := strings.CutPrefix(k, compat.LabelProxyKindPrefix); ok {
			e.Labels["dst_"+kind] = v // dst_deployment, dst_statefulset, ...
		}
	}
	if b.proxied(pod, port) {
		e.Meshed, e.Protocol = true, destination.ProtocolProxy
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		e.Identity = fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, pod.Namespace, b.cfg.ControlPlaneNS, b.cfg.TrustDomain)
		e.Labels["dst_serviceaccount"] = sa
	}
	if b.opaque(nil, pod, port) || b.serverOpaque(pod, port) {
		b.markOpaque(&e, pod)
	}
	return e
}

// proxied reports whether a connection to port of pod is taken by the
// pod's proxy, and so is mTLS from a meshed client: the pod is of this
// mesh (linkerd.io/control-plane-ns) and has a linkerd-proxy container, and
// the port is not one linkerd-init leaves alone — the proxy's own control
// and admin ports (a meshed Prometheus scrapes 4191 in plaintext), 4567,
// 4568, and config.linkerd.io/skip-inbound-ports of the pod, else its
// namespace. The control plane's own pods carry the label without a proxy.
func (b *Backend) proxied(pod *corev1.Pod, port int32) bool {
	if pod.Labels[compat.LabelControlPlaneNS] == "" {
		return false
	}
	hasProxy := false
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			hasProxy = hasProxy || c.Name == compat.ProxyContainerName
		}
	}
	if !hasProxy {
		return false
	}
	for _, p := range compat.DefaultIgnoredInboundPorts {
		if int(port) == p {
			return false
		}
	}
	skip, ok := pod.Annotations[compat.AnnotationSkipInboundPorts]
	if !ok {
		if n, err := b.namespaces.Get(pod.Namespace); err == nil {
			skip = n.Annotations[compat.AnnotationSkipInboundPorts]
		}
	}
	return !portListed(skip, int(port))
}

// markOpaque makes e an opaque endpoint; a meshed pod's proxy then takes
// the connection over mTLS at its inbound port (the opaque transport).
func (b *Backend) markOpaque(e *destination.Endpoint, pod *corev1.Pod) {
	e.Protocol = destination.ProtocolOpaque
	if e.Meshed {
		e.OpaqueTransportPort = proxyInboundPort(pod)
	}
}

// proxyInboundPort is the port the pod's proxy container declares as
// linkerd-proxy (the injector always does), else the default 4143.
func proxyInboundPort(pod *corev1.Pod) uint32 {
	for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name != compat.ProxyContainerName {
				continue
			}
			for _, p := range c.Ports {
				if p.Name == compat.ProxyPortName && p.ContainerPort > 0 {
					return uint32(p.ContainerPort)
				}
			}
		}
	}
	return compat.InboundPort
}

// opaque reports whether port is opaque per config.linkerd.io/opaque-ports
// on the Service, the Pod, or the namespace.
func (b *Backend) opaque(svc *corev1.Service, pod *corev1.Pod, port int32) bool {
	var anns []map[string]string
	ns := ""
	if svc != nil {
		anns, ns = append(anns, svc.Annotations), svc.Namespace
	}
	if pod != nil {
		anns, ns = append(anns, pod.Annotations), pod.Namespace
	}
	if n, err := b.namespaces.Get(ns); err == nil {
		anns = append(anns, n.Annotations)
	}
	for _, a := range anns {
		if v, ok := a[compat.AnnotationOpaquePorts]; ok {
			return portListed(v, int(port))
		}
	}
	return false
}

func portListed(list string, port int) bool {
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if port >= a && port <= b {
			return true
		}
	}
	return false
}

// containerPorts keeps, of a pod's containers, their names and port
// names and numbers: the proxy's (for the opaque transport), whether it
// runs as a container or a native sidecar, and the application's (the
// ports Servers name).
func containerPorts(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if len(c.Ports) == 0 {
				continue
			}
			slim := corev1.Container{Name: c.Name}
			for _, cp := range c.Ports {
				slim.Ports = append(slim.Ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort})
			}
			out = append(out, slim)
		}
	}
	return out
}

// slimPod is the pod informer's transform.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: p.Labels},
		Spec:       corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName, Containers: containerPorts(p)},
		Status:     corev1.PodStatus{PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs, Phase: p.Status.Phase},
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, compat.ConfigAnnotationPrefix) || strings.HasPrefix(k, compat.LinkerdAnnotationPrefix) {
			if slim.Annotations == nil {
				slim.Annotations = map[string]string{}
			}
			slim.Annotations[k] = v
		}
	}
	return slim, nil
}
