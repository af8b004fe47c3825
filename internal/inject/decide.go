package inject

import (
	"fmt"

	"github.com/weftmesh/weft/internal/compat"
)

// The reasons a workload is not injected, in the words Linkerd's users see.
const (
	ReasonHostNetwork         = "hostNetwork is enabled"
	ReasonSidecarExists       = "pod has a sidecar injected already"
	ReasonUnsupportedResource = "this resource kind is unsupported"
	ReasonAutomountDisabled   = `automountServiceAccountToken set to "false"`
	ReasonPodDisabled         = `pod has the annotation "linkerd.io/inject:disabled"`
	ReasonNamespaceDisabled   = `namespace has the annotation "linkerd.io/inject:disabled"`
	ReasonNotEnabled          = `neither the namespace nor the pod have the annotation "linkerd.io/inject:enabled"`
)

// Report is the decision for one workload.
type Report struct {
	Injectable bool
	Reasons    []string // why not, when not
	Mode       string   // enabled or ingress, when injectable
	At         string   // where the deciding annotation is: pod, namespace, or "" (forced)
}

// Decide applies the injector's rules. The pod's (template's) linkerd.io/inject
// wins over the namespace's; "disabled" opts out. With force (weft inject
// --manual), a workload with no annotation is injected too.
func Decide(w *Workload, nsAnnotations map[string]string, force bool) Report {
	var r Report
	if !Supported(w.Kind) {
		r.Reasons = append(r.Reasons, ReasonUnsupportedResource)
	}
	if w.PodSpec.HostNetwork {
		r.Reasons = append(r.Reasons, ReasonHostNetwork)
	}
	if hasSidecar(w) {
		r.Reasons = append(r.Reasons, ReasonSidecarExists)
	}
	podValue, onPod := w.PodMeta.Annotations[compat.AnnotationInject]
	nsValue, onNS := nsAnnotations[compat.AnnotationInject]
	switch {
	case onPod:
		r.Mode, r.At = podValue, "pod"
	case onNS:
		r.Mode, r.At = nsValue, "namespace"
	case force:
		r.Mode = compat.InjectEnabled
	}
	switch r.Mode {
	case compat.InjectEnabled, compat.InjectIngress:
	case compat.InjectDisabled:
		if r.At == "pod" {
			r.Reasons = append(r.Reasons, ReasonPodDisabled)
		} else {
			r.Reasons = append(r.Reasons, ReasonNamespaceDisabled)
		}
	case "":
		r.Reasons = append(r.Reasons, ReasonNotEnabled)
	default:
		r.Reasons = append(r.Reasons, fmt.Sprintf("invalid value %q of the annotation %q (want enabled, disabled or ingress)", r.Mode, compat.AnnotationInject))
	}
	if a := w.PodSpec.AutomountServiceAccountToken; a != nil && !*a {
		r.Reasons = append(r.Reasons, ReasonAutomountDisabled)
	}
	r.Injectable = len(r.Reasons) == 0
	return r
}

// hasSidecar says whether a proxy (ours or another mesh's) is already there.
func hasSidecar(w *Workload) bool {
	for _, list := range [][]string{names(w.PodSpec.Containers), names(w.PodSpec.InitContainers)} {
		for _, n := range list {
			switch n {
			case compat.ProxyContainerName, compat.InitContainerName, "istio-proxy", "istio-init":
				return true
			}
		}
	}
	return false
}
