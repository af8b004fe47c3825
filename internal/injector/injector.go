// Package injector is the proxy-injector admission webhook: a thin adapter
// that reads an AdmissionReview, looks up what the pure injection function
// needs from the API (the namespace's annotations, the pod's top-level
// owner), calls package inject, answers with its JSON patch, and records an
// Injected or Skipped Event on the owner.
package injector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/jsonpatch"
)

// Cluster is what the webhook asks the API (an informer-backed
// implementation in production, a fake in unit tests).
type Cluster interface {
	// NamespaceAnnotations returns a namespace's annotations.
	NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error)
	// Owner follows ownerRefs to the top-level controller of a new pod
	// (ReplicaSet → Deployment, Job → CronJob); ok is false when there is none.
	Owner(ctx context.Context, namespace string, ref metav1.OwnerReference) (owner *corev1.ObjectReference, ok bool, err error)
}

// Webhook answers AdmissionReviews.
type Webhook struct {
	Values    *LiveValues // replaced as the control plane's configuration changes
	CreatedBy string      // e.g. "weft/proxy-injector v0.1.0"
	Cluster   Cluster
	Events    func(ref *corev1.ObjectReference, eventType, reason, message string)
	Log       *slog.Logger
	Observe   func(time.Duration, string) // optional: admission latency by result
	// VizNamespace, when set, names viz's namespace (KubeCluster's); the
	// injected proxies serve tap to its tap server only. Default linkerd-viz.
	VizNamespace func() string
}

// ServeHTTP handles POST / with an AdmissionReview v1 (or v1beta1) body.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	var result string
	serveReview(w, r, func(req *admissionv1.AdmissionRequest) (resp *admissionv1.AdmissionResponse) {
		resp, result = h.Review(r.Context(), req)
		return resp
	})
	if h.Observe != nil && result != "" { // a request answered (not a bad body)
		h.Observe(time.Since(start), result)
	}
}

// serveReview decodes an AdmissionReview v1 (or v1beta1) request from r,
// answers it with review's response (the request's UID, the same API
// version) and writes it to w; a body that is no AdmissionReview gets 400.
func serveReview(w http.ResponseWriter, r *http.Request, review func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	resp := review(in.Request)
	resp.UID = in.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// Review decides one request. It always allows: a resource it cannot or
// must not inject is admitted unchanged. result is injected, skipped or
// normalised (for metrics and logs).
func (h *Webhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Kind == "Service" {
		return h.service(req)
	}
	w, err := inject.ParseWorkload(req.Object.Raw)
	if err != nil {
		h.Log.Info("admitted unchanged", "kind", req.Kind.Kind, "name", req.Name, "namespace", req.Namespace, "reason", err)
		return allow, "skipped"
	}
	if w.Namespace == "" {
		w.Namespace = req.Namespace
	}
	if w.Name == "" {
		w.Name = w.Meta.GenerateName
	}
	nsAnn, err := h.Cluster.NamespaceAnnotations(ctx, req.Namespace)
	if err != nil {
		h.Log.Warn("namespace lookup failed; admitted unchanged", "namespace", req.Namespace, "err", err)
		return allow, "skipped"
	}
	var owner *corev1.ObjectReference
	if ref := metav1.GetControllerOf(&w.Meta); ref != nil {
		if o, ok, err := h.Cluster.Owner(ctx, req.Namespace, *ref); err != nil {
			h.Log.Warn("owner lookup failed", "kind", ref.Kind, "name", ref.Name, "err", err)
		} else if ok {
			owner = o
			w.OwnerKind, w.OwnerName = o.Kind, o.Name
		}
	}
	report := inject.Decide(w, nsAnn, false)
	if !report.Injectable {
		reason := strings.Join(report.Reasons, ", ")
		h.Log.Info("skipped", "kind", w.Kind, "name", w.Name, "namespace", w.Namespace, "reasons", reason)
		// Not asking for injection is the common case, not news.
		if owner != nil && !slices.Equal(report.Reasons, []string{inject.ReasonNotEnabled}) {
			h.event(owner, corev1.EventTypeNormal, compat.EventReasonSkipped, "Linkerd sidecar proxy injection skipped: "+reason)
		}
		return allow, "skipped"
	}
	opts := inject.Options{CreatedBy: h.CreatedBy, NSAnnotations: nsAnn, Mode: report.Mode}
	if h.VizNamespace != nil {
		opts.VizNamespace = h.VizNamespace()
	}
	ops, err := inject.Patch(w, h.Values.Load(), opts)
	if err != nil {
		h.Log.Warn("not injected", "kind", w.Kind, "name", w.Name, "namespace", w.Namespace, "err", err)
		if owner != nil {
			h.event(owner, corev1.EventTypeWarning, compat.EventReasonSkipped, "Linkerd sidecar proxy injection skipped: "+err.Error())
		}
		return allow, "skipped"
	}
	patch, err := inject.MarshalPatch(ops)
	if err != nil {
		return allow, "skipped"
	}
	if owner != nil {
		h.event(owner, corev1.EventTypeNormal, compat.EventReasonInjected, compat.EventMessageInjected)
	}
	h.Log.Info("injected", "kind", w.Kind, "name", w.Name, "namespace", w.Namespace, "mode", report.Mode, "at", report.At)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: patch}, "injected"
}

func (h *Webhook) event(ref *corev1.ObjectReference, eventType, reason, msg string) {
	if h.Events != nil {
		h.Events(ref, eventType, reason, msg)
	}
}

// service normalises a Service's opaque-ports annotation: named ports
// resolved to numbers, ranges kept, duplicates dropped.
func (h *Webhook) service(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	var svc corev1.Service
	if err := json.Unmarshal(req.Object.Raw, &svc); err != nil {
		return allow, "skipped"
	}
	val, ok := svc.Annotations[compat.AnnotationOpaquePorts]
	if !ok {
		return allow, "skipped"
	}
	norm, err := normalisePorts(val, svc.Spec.Ports)
	if err != nil {
		h.Log.Warn("service opaque-ports left as is", "service", req.Namespace+"/"+svc.Name, "err", err)
		return allow, "skipped"
	}
	if norm == val {
		return allow, "skipped"
	}
	patch, _ := json.Marshal([]jsonpatch.Op{{Op: "replace", Path: "/metadata/annotations/" + strings.ReplaceAll(compat.AnnotationOpaquePorts, "/", "~1"), Value: norm}})
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: patch}, "normalised"
}

func normalisePorts(val string, ports []corev1.ServicePort) (string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(val, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if _, err := strconv.Atoi(strings.Split(part, "-")[0]); err != nil {
			port := -1
			for _, p := range ports {
				if p.Name == part {
					port = int(p.Port)
				} else if p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == part {
					port = int(p.Port)
				}
			}
			if port < 0 {
				return "", fmt.Errorf("no port named %q", part)
			}
			part = strconv.Itoa(port)
		}
		if !seen[part] {
			seen[part] = true
			out = append(out, part)
		}
	}
	return strings.Join(out, ","), nil
}
