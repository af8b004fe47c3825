package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/injector"
)

// Weft's own names for what the watcher reports (not Linkerd's).
const (
	// EventReasonConfigRejected is the reason of the Warning Event recorded
	// on a ConfigMap whose new content the injector refused.
	EventReasonConfigRejected = "InjectorConfigRejected"
	metricConfigReloads       = "proxy_injector_config_reloads_total"
)

// configWatcher keeps the injector's values current with two ConfigMaps in
// the control plane's namespace: linkerd-config (key values: the chart's
// values) and linkerd-identity-trust-roots (key ca-bundle.crt: the trust
// anchors, which win over the values' identityTrustAnchorsPEM). Each is
// watched by its own informer, listing and watching that one name. An
// update that does not decode, or whose anchors are not PEM certificates,
// is refused: the last good values stay, and the refusal is logged,
// recorded as a Warning Event on the ConfigMap and counted.
type configWatcher struct {
	client kubernetes.Interface
	ns     string
	live   *injector.LiveValues
	record func(ref *corev1.ObjectReference, eventType, reason, message string)
	log    *slog.Logger

	reloads *prometheus.CounterVec // by configmap and result (applied, rejected, deleted)

	mu         sync.Mutex // serialises applies; live is read without it
	valuesYAML []byte     // the last good inputs (the files' until a ConfigMap is seen)
	anchors    string
}

func newConfigWatcher(client kubernetes.Interface, ns string, valuesYAML []byte, anchors string, live *injector.LiveValues,
	record func(*corev1.ObjectReference, string, string, string), reg prometheus.Registerer, log *slog.Logger) *configWatcher {
	w := &configWatcher{client: client, ns: ns, live: live, record: record, log: log, valuesYAML: valuesYAML, anchors: anchors,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricConfigReloads,
			Help: "Changes of linkerd-config and linkerd-identity-trust-roots seen by the proxy injector, by ConfigMap and result (applied, rejected: the last good values kept, deleted: likewise).",
		}, []string{"configmap", "result"})}
	reg.MustRegister(w.reloads)
	return w
}

// start runs the informers until ctx ends and waits, at most timeout (30 s
// when not positive), for their first listing, whose content is applied
// before start returns.
func (w *configWatcher) start(ctx context.Context, timeout time.Duration) error {
	var synced []cache.InformerSynced
	for _, name := range []string{compat.ConfigConfigMap, compat.TrustRootsConfigMap} {
		f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(w.ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		inf := f.Core().V1().ConfigMaps().Informer()
		// The handlers check the name too: the field selector is the API
		// server's to apply, and a fake one may not.
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { w.changed(name, obj) },
			UpdateFunc: func(old, obj any) {
				// A relist redelivers what was seen: nothing to apply or refuse again.
				if o, ok := old.(*corev1.ConfigMap); ok {
					if n, ok := obj.(*corev1.ConfigMap); ok && o.ResourceVersion != "" && o.ResourceVersion == n.ResourceVersion {
						return
					}
				}
				w.changed(name, obj)
			},
			DeleteFunc: func(obj any) { w.deleted(name, obj) },
		})
		if err != nil {
			return fmt.Errorf("watching ConfigMap %s/%s: %w", w.ns, name, err)
		}
		f.Start(ctx.Done())
		// The handler's sync, not the informer's: the first listing must
		// have been applied, not only stored, before start returns.
		synced = append(synced, reg.HasSynced)
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(wait.Done(), synced...) {
		return fmt.Errorf("watching ConfigMaps %s and %s in %s: not listed within %v (the injector needs get, list and watch on configmaps there; --watch-config=false uses the files alone)",
			compat.ConfigConfigMap, compat.TrustRootsConfigMap, w.ns, timeout)
	}
	return nil
}

func (w *configWatcher) changed(name string, obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != name {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	valuesYAML, anchors := w.valuesYAML, w.anchors
	var err error
	switch cm.Name {
	case compat.ConfigConfigMap:
		v, ok := cm.Data[compat.ConfigValuesKey]
		if !ok {
			err = fmt.Errorf("no key %q", compat.ConfigValuesKey)
		}
		valuesYAML = []byte(v)
	case compat.TrustRootsConfigMap:
		v, ok := cm.Data[compat.TrustRootsKey]
		if !ok || v == "" {
			err = fmt.Errorf("no key %q", compat.TrustRootsKey)
		}
		anchors = v
	default:
		return
	}
	if err == nil {
		var values inject.Values
		if values, err = injectorValues(valuesYAML, anchors, w.ns); err == nil {
			same := string(valuesYAML) == string(w.valuesYAML) && anchors == w.anchors
			w.live.Store(values)
			w.valuesYAML, w.anchors = valuesYAML, anchors
			w.reloads.WithLabelValues(cm.Name, "applied").Inc()
			if !same {
				w.log.Info("injector configuration updated", "configmap", cm.Name, "resourceVersion", cm.ResourceVersion,
					"trust-root-sha256", sha256Hex(values.IdentityTrustAnchorsPEM))
			}
			return
		}
	}
	w.reloads.WithLabelValues(cm.Name, "rejected").Inc()
	msg := fmt.Sprintf("the proxy injector refused this version of %s and keeps injecting its last good configuration: %v", cm.Name, err)
	w.log.Warn("injector configuration refused; the last good one stays", "configmap", cm.Name, "resourceVersion", cm.ResourceVersion, "err", err)
	if w.record != nil {
		w.record(&corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: cm.Namespace, Name: cm.Name,
			UID: cm.UID, ResourceVersion: cm.ResourceVersion}, corev1.EventTypeWarning, EventReasonConfigRejected, msg)
	}
}

func (w *configWatcher) deleted(name string, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != name {
		return
	}
	w.reloads.WithLabelValues(cm.Name, "deleted").Inc()
	w.log.Warn("injector configuration deleted; the last good one stays", "configmap", cm.Name)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
