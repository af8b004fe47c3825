package inject

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/compat"
)

// Workload is a resource that holds a pod spec: a Pod, or a controller's
// pod template.
type Workload struct {
	Kind      string // Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob
	Name      string
	Namespace string
	Meta      metav1.ObjectMeta // the resource's own metadata
	PodMeta   metav1.ObjectMeta // the pod's (the template's) metadata
	PodSpec   corev1.PodSpec
	// Owner names the top-level controller that made this pod, for the
	// linkerd.io/proxy-<kind> label and events (e.g. Deployment web); empty
	// for a workload that is its own owner.
	OwnerKind, OwnerName string
}

// templatePaths is where each kind keeps its pod template (JSON pointer).
var templatePaths = map[string]string{
	"Pod":         "",
	"Deployment":  "/spec/template",
	"StatefulSet": "/spec/template",
	"DaemonSet":   "/spec/template",
	"ReplicaSet":  "/spec/template",
	"Job":         "/spec/template",
	"CronJob":     "/spec/jobTemplate/spec/template",
}

// TemplatePath is the JSON pointer of kind's pod template ("" for a Pod).
func TemplatePath(kind string) string { return templatePaths[kind] }

// Supported says whether kind holds a pod spec the injector handles.
func Supported(kind string) bool {
	_, ok := templatePaths[kind]
	return ok
}

// ErrUnsupported is returned by ParseWorkload for a kind without a pod spec.
type ErrUnsupported struct{ Kind string }

func (e ErrUnsupported) Error() string {
	return fmt.Sprintf("%s: %s", e.Kind, ReasonUnsupportedResource)
}

// ParseWorkload reads a resource's JSON (as an AdmissionReview or a YAML
// document decoded to JSON carries it).
func ParseWorkload(raw []byte) (*Workload, error) {
	var head struct {
		Kind     string            `json:"kind"`
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("decoding the resource: %w", err)
	}
	if head.Kind == "" {
		return nil, fmt.Errorf("the resource has no kind")
	}
	path, ok := templatePaths[head.Kind]
	if !ok {
		return nil, ErrUnsupported{Kind: head.Kind}
	}
	w := &Workload{Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Meta: head.Metadata}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	tmpl := doc
	for _, key := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if key == "" {
			continue
		}
		m, _ := tmpl.(map[string]any)
		tmpl = m[key]
	}
	b, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	var pt struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     *corev1.PodSpec   `json:"spec"`
	}
	if err := json.Unmarshal(b, &pt); err != nil {
		return nil, fmt.Errorf("decoding the pod spec of %s/%s: %w", head.Kind, head.Metadata.Name, err)
	}
	if pt.Spec == nil {
		return nil, fmt.Errorf("%s/%s has no pod spec at %s/spec", head.Kind, head.Metadata.Name, path)
	}
	w.PodMeta, w.PodSpec = pt.Metadata, *pt.Spec
	if head.Kind == "Pod" {
		w.PodMeta = head.Metadata
	}
	return w, nil
}

// prefix is the JSON pointer of the pod template ("" for a Pod).
func (w *Workload) prefix() string { return templatePaths[w.Kind] }

// ownerLabel is the linkerd.io/proxy-<kind> label and its value.
func (w *Workload) ownerLabel() (string, string) {
	kind, name := w.OwnerKind, w.OwnerName
	if kind == "" {
		kind, name = w.Kind, w.Name
	}
	if kind == "Pod" || name == "" {
		return "", ""
	}
	return compat.LabelProxyKindPrefix + strings.ToLower(kind), name
}
