package injector

import (
	"context"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/weftmesh/weft/internal/inject"
)

// JaegerWebhook is the jaeger extension's injector: it admits pods after
// the proxy injector and adds the trace settings to their proxy
// (inject.TracePatch). It always admits; a pod without a proxy, or one it
// cannot patch, passes unchanged.
type JaegerWebhook struct {
	Values  inject.TraceValues
	Cluster Cluster // only NamespaceAnnotations is used
	Log     *slog.Logger
}

// ServeHTTP handles POST / with an AdmissionReview v1 body.
func (h *JaegerWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	serveReview(w, r, func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return h.Review(r.Context(), req)
	})
}

// Review patches one pod.
func (h *JaegerWebhook) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	w, err := inject.ParseWorkload(req.Object.Raw)
	if err != nil {
		return allow
	}
	if w.Namespace == "" {
		w.Namespace = req.Namespace
	}
	var nsAnn map[string]string
	if h.Cluster != nil {
		if nsAnn, err = h.Cluster.NamespaceAnnotations(ctx, req.Namespace); err != nil {
			h.Log.Warn("namespace lookup failed; using the pod's annotations only", "namespace", req.Namespace, "err", err)
		}
	}
	ops, err := inject.TracePatch(w, h.Values, nsAnn)
	if err != nil {
		h.Log.Warn("trace settings not added", "kind", w.Kind, "name", w.Name, "namespace", w.Namespace, "err", err)
		return allow
	}
	if len(ops) == 0 {
		return allow
	}
	patch, err := inject.MarshalPatch(ops)
	if err != nil {
		return allow
	}
	h.Log.Info("trace settings added", "kind", w.Kind, "name", w.Name, "namespace", w.Namespace)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: patch}
}
