package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/jsonpatch"
)

// Options are per-call inputs beyond the Values.
type Options struct {
	CreatedBy     string            // the linkerd.io/created-by annotation, e.g. "weft/proxy-injector v1"
	NSAnnotations map[string]string // the namespace's annotations (config.linkerd.io/* are inherited)
	Mode          string            // enabled or ingress (from Decide)
	// VizNamespace is viz's namespace: the proxy serves tap to the tap
	// server's identity there (default linkerd-viz).
	VizNamespace string
}

// Patch returns the JSON patch that injects the proxy into w. Call it only
// for a workload Decide found injectable.
func Patch(w *Workload, v Values, o Options) ([]jsonpatch.Op, error) {
	cfg, err := resolve(w, v, o)
	if err != nil {
		return nil, err
	}
	p := w.prefix()
	var ops []jsonpatch.Op
	add := func(path string, value any) { ops = append(ops, jsonpatch.Op{Op: "add", Path: p + path, Value: value}) }

	// Annotations and labels on the pod (template).
	ann := map[string]string{
		compat.AnnotationCreatedBy:       o.CreatedBy,
		compat.AnnotationProxyVersion:    proxyVersion(v),
		compat.AnnotationTrustRootSHA256: sha256Hex(v.IdentityTrustAnchorsPEM),
		compat.AnnotationIdentityMode:    "default",
	}
	if cfg.opaquePorts != "" && w.PodMeta.Annotations[compat.AnnotationOpaquePorts] == "" {
		ann[compat.AnnotationOpaquePorts] = cfg.opaquePorts
	}
	// kubectl logs/exec pick the app, not the proxy placed first, unless
	// the pod already names its default container.
	if _, set := w.PodMeta.Annotations[compat.AnnotationDefaultContainer]; !set {
		if app := FirstAppContainer(w.PodSpec.Containers); app != "" {
			ann[compat.AnnotationDefaultContainer] = app
		}
	}
	for k, val := range o.NSAnnotations { // inherited overrides, made visible on the pod
		if (strings.HasPrefix(k, compat.ConfigAnnotationPrefix) && k != compat.AnnotationAdmissionWebhooks) || k == compat.AnnotationPreserveClientAddress {
			if _, set := w.PodMeta.Annotations[k]; !set {
				ann[k] = val
			}
		}
	}
	labels := map[string]string{compat.LabelControlPlaneNS: v.ControllerNamespace, compat.LabelWorkloadNS: cfg.namespace}
	if k, val := w.ownerLabel(); k != "" {
		labels[k] = val
	}
	ops = append(ops, mapOps(p+"/metadata/annotations", w.PodMeta.Annotations, ann)...)
	ops = append(ops, mapOps(p+"/metadata/labels", w.PodMeta.Labels, labels)...)

	// Volumes.
	if w.PodSpec.Volumes == nil {
		add("/spec/volumes", []any{})
	}
	for _, vol := range volumes() {
		add("/spec/volumes/-", vol)
	}

	// Containers: linkerd-init first; the proxy first among the containers
	// (so that await holds the app back), or as a native sidecar.
	proxy := proxyContainer(v, cfg)
	initC := initContainer(v, cfg)
	if w.PodSpec.InitContainers == nil {
		add("/spec/initContainers", []any{})
	}
	add("/spec/initContainers/0", initC)
	if cfg.nativeSidecar {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		add("/spec/initContainers/1", proxy)
	} else if cfg.await {
		add("/spec/containers/0", proxy)
	} else {
		add("/spec/containers/-", proxy)
	}
	return ops, nil
}

// mapOps adds entries to a string map at path, creating the map if absent.
// JSON pointer escapes "/" in keys as "~1".
func mapOps(path string, have, want map[string]string) []jsonpatch.Op {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if have == nil {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = want[k]
		}
		return []jsonpatch.Op{{Op: "add", Path: path, Value: m}}
	}
	var ops []jsonpatch.Op
	for _, k := range keys {
		op := "add"
		if _, ok := have[k]; ok {
			op = "replace"
		}
		ops = append(ops, jsonpatch.Op{Op: op, Path: path + "/" + escape(k), Value: want[k]})
	}
	return ops
}

func proxyVersion(v Values) string {
	if v.Proxy.Image.Version != "" {
		return v.Proxy.Image.Version
	}
	return v.Version
}

func escape(k string) string { return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1") }

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MarshalPatch encodes a patch.
func MarshalPatch(ops []jsonpatch.Op) ([]byte, error) { return json.Marshal(ops) }

// FirstAppContainer is the name of the first container that is not the
// proxy ("" when there is none): what the injector names in
// kubectl.kubernetes.io/default-container. Init containers are not in cs.
func FirstAppContainer(cs []corev1.Container) string {
	for _, c := range cs {
		if c.Name != compat.ProxyContainerName {
			return c.Name
		}
	}
	return ""
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// containerPorts are the ports the pod's containers declare.
func containerPorts(spec corev1.PodSpec) map[int32]bool {
	ports := map[int32]bool{}
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				ports[p.ContainerPort] = true
			}
		}
	}
	return ports
}

// filterPorts keeps the ports and ranges of list (e.g. "25,3306,4000-4100")
// that the pod declares, as Linkerd does for the default opaque ports.
func filterPorts(list string, declared map[int32]bool) (string, error) {
	var keep []string
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, err := portRange(part)
		if err != nil {
			return "", err
		}
		for port := lo; port <= hi; port++ {
			if declared[int32(port)] {
				keep = append(keep, strconv.Itoa(port))
			}
		}
	}
	return strings.Join(keep, ","), nil
}

func portRange(s string) (int, int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || a > 65535 {
		return 0, 0, fmt.Errorf("port %q: want 1-65535 or a range such as 4000-4100", s)
	}
	if !isRange {
		return a, a, nil
	}
	b, err := strconv.Atoi(hi)
	if err != nil || b < a || b > 65535 {
		return 0, 0, fmt.Errorf("port range %q: want LOW-HIGH within 1-65535", s)
	}
	return a, b, nil
}
