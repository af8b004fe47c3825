package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// Names of the Kubernetes objects the identity controller reads.
const (
	IssuerSecretName    = compat.IssuerSecret
	TrustRootsConfigMap = compat.TrustRootsConfigMap
	TrustRootsKey       = compat.TrustRootsKey

	SchemeLinkerd    = compat.IssuerSchemeLinkerd
	SchemeKubernetes = compat.IssuerSchemeKubernetes
)

// IssuerSetter receives each valid issuer; *identity.Service implements it.
type IssuerSetter interface {
	SetIssuer(identity.Issuer)
}

// IssuerWatcher loads the issuer from its Secret and reloads it on every
// change. An invalid issuer is refused (log line, Event, metric) and the
// last good one keeps serving.
type IssuerWatcher struct {
	Client     kubernetes.Interface
	Namespace  string // the control plane's namespace
	Scheme     string // SchemeLinkerd or SchemeKubernetes
	AnchorsPEM []byte // static anchors; ignored when ExternalCA
	ExternalCA bool   // read anchors from the linkerd-identity-trust-roots ConfigMap
	Target     IssuerSetter
	Recorder   record.EventRecorder // may be nil
	Log        *slog.Logger
	Skew       time.Duration

	secrets    listersv1.SecretLister
	configMaps listersv1.ConfigMapLister

	mu     sync.Mutex
	loaded string // resource versions of what was loaded last
	// refusedVersion is the resource versions last refused, so one bad
	// issuer is warned about once.
	refusedVersion string
	once           sync.Once
	expiry         prometheus.Gauge
	refused        prometheus.Counter
	updates        prometheus.Counter
}

func (w *IssuerWatcher) init() {
	w.once.Do(func() {
		w.expiry = prometheus.NewGauge(prometheus.GaugeOpts{Name: "identity_issuer_expiration_timestamp_seconds",
			Help: "When the issuer certificate in use expires (seconds since the UNIX epoch)."})
		w.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "identity_issuer_refused_total",
			Help: "Issuer certificates refused: invalid, expired, or not chaining to a trust anchor."})
		w.updates = prometheus.NewCounter(prometheus.CounterOpts{Name: "identity_issuer_updates_total",
			Help: "Issuer certificates loaded."})
		if w.Log == nil {
			w.Log = slog.Default()
		}
	})
}

// Collectors are the watcher's metrics.
func (w *IssuerWatcher) Collectors() []prometheus.Collector {
	w.init()
	return []prometheus.Collector{w.expiry, w.refused, w.updates}
}

// Start watches the Secret (and the trust-roots ConfigMap with ExternalCA)
// until ctx ends. It returns after the caches synced and the first load was
// attempted.
func (w *IssuerWatcher) Start(ctx context.Context) error {
	w.init()
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	// Until both caches have synced, a missing object only means "not
	// listed yet": reloading then would refuse the issuer for nothing.
	var synced atomic.Bool
	reload := func() {
		if synced.Load() {
			w.Reload()
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { reload() },
		UpdateFunc: func(any, any) { reload() },
	}
	// Every lister and handler is in place before any informer starts:
	// a handler may call Reload, which reads both listers.
	sf := informers.NewSharedInformerFactoryWithOptions(w.Client, 10*time.Minute, informers.WithNamespace(w.Namespace), byName(IssuerSecretName))
	si := sf.Core().V1().Secrets()
	w.secrets = si.Lister()
	hasSynced := []cache.InformerSynced{si.Informer().HasSynced}
	factories := []informers.SharedInformerFactory{sf}
	var cmInformer cache.SharedIndexInformer
	if w.ExternalCA {
		cf := informers.NewSharedInformerFactoryWithOptions(w.Client, 10*time.Minute, informers.WithNamespace(w.Namespace), byName(TrustRootsConfigMap))
		ci := cf.Core().V1().ConfigMaps()
		w.configMaps = ci.Lister()
		cmInformer = ci.Informer()
		hasSynced = append(hasSynced, cmInformer.HasSynced)
		factories = append(factories, cf)
	}
	if _, err := si.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("watching secret %s: %w", IssuerSecretName, err)
	}
	if cmInformer != nil {
		if _, err := cmInformer.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching configmap %s: %w", TrustRootsConfigMap, err)
		}
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), hasSynced...) {
		return fmt.Errorf("issuer watch: caches did not sync")
	}
	synced.Store(true)
	w.Reload()
	return nil
}

// Reload reads the current objects and installs the issuer if it is valid
// and new.
func (w *IssuerWatcher) Reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	secret, err := w.secrets.Secrets(w.Namespace).Get(IssuerSecretName)
	if err != nil {
		w.Log.Warn("issuer secret not available", "namespace", w.Namespace, "name", IssuerSecretName, "err", err)
		return
	}
	anchors, version, err := w.anchors()
	if err != nil {
		w.refuse(secret, err)
		return
	}
	version += "/" + secret.ResourceVersion
	if version == w.loaded || version == w.refusedVersion {
		// Already installed, or already refused: a second event for the
		// same objects (an informer's add delivered after its update, a
		// resync) neither reinstalls nor repeats the warning.
		return
	}
	ca, err := w.load(secret, anchors)
	if err != nil {
		w.refusedVersion = version
		w.refuse(secret, err)
		return
	}
	w.Target.SetIssuer(ca)
	w.loaded = version
	w.updates.Inc()
	w.expiry.Set(float64(ca.Expiry().Unix()))
	w.Log.Info("issuer loaded", "subject", ca.Certificate().Subject.String(), "expires", ca.Expiry().Format(time.RFC3339))
	w.event(secret, corev1.EventTypeNormal, "IssuerUpdated", "Updated identity issuer: %s, expires %s",
		ca.Certificate().Subject.CommonName, ca.Expiry().Format(time.RFC3339))
}

func (w *IssuerWatcher) anchors() (pem []byte, version string, err error) {
	if !w.ExternalCA {
		if len(w.AnchorsPEM) == 0 {
			return nil, "", fmt.Errorf("no trust anchors configured")
		}
		return w.AnchorsPEM, "static", nil
	}
	cm, err := w.configMaps.ConfigMaps(w.Namespace).Get(TrustRootsConfigMap)
	if err != nil {
		return nil, "", fmt.Errorf("trust roots configmap %s: %w", TrustRootsConfigMap, err)
	}
	b := cm.Data[TrustRootsKey]
	if b == "" {
		return nil, "", fmt.Errorf("configmap %s has no %s", TrustRootsConfigMap, TrustRootsKey)
	}
	return []byte(b), cm.ResourceVersion, nil
}

func (w *IssuerWatcher) load(s *corev1.Secret, anchorsPEM []byte) (*localca.CA, error) {
	crtKey, keyKey := "crt.pem", "key.pem"
	if w.Scheme == SchemeKubernetes {
		crtKey, keyKey = corev1.TLSCertKey, corev1.TLSPrivateKeyKey
	}
	crt, key := s.Data[crtKey], s.Data[keyKey]
	if len(crt) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("secret %s/%s (scheme %s) lacks %s or %s", s.Namespace, s.Name, w.Scheme, crtKey, keyKey)
	}
	anchors, _, err := pki.AnchorPool(anchorsPEM)
	if err != nil {
		return nil, err
	}
	return localca.New(crt, key, anchors, localca.Options{ClockSkewAllowance: w.Skew})
}

func (w *IssuerWatcher) refuse(s *corev1.Secret, err error) {
	w.refused.Inc()
	w.Log.Error("refusing identity issuer; still signing with the last good one", "secret", s.Namespace+"/"+s.Name, "err", err)
	w.event(s, corev1.EventTypeWarning, "IssuerInvalid", "Refused identity issuer: %v", err)
}

func (w *IssuerWatcher) event(s *corev1.Secret, typ, reason, format string, args ...any) {
	if w.Recorder != nil {
		w.Recorder.Eventf(s, typ, reason, format, args...)
	}
}
