package controller

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/injector"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/poll"
)

func newCAPEM(t *testing.T) string {
	t.Helper()
	ca, err := kubetest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return string(ca.PEM())
}

// TestConfigWatcher follows the two ConfigMaps through a fake API: each
// good change is applied whole, a bad one is refused (last good values
// kept, a Warning Event, the rejected counter), and so is a deletion.
func TestConfigWatcher(t *testing.T) {
	fileAnchors, a1, a2 := newCAPEM(t), newCAPEM(t), newCAPEM(t)
	cm := func(name, key, value string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "linkerd"}, Data: map[string]string{key: value}}
	}
	client := fake.NewClientset(
		cm(compat.TrustRootsConfigMap, compat.TrustRootsKey, a1),
		cm(compat.ConfigConfigMap, compat.ConfigValuesKey, "proxy:\n  logLevel: info\n"),
		cm("unrelated", "values", "proxy: 5"), // not watched: never refused
	)
	start, err := injectorValues(nil, fileAnchors, "linkerd")
	if err != nil {
		t.Fatal(err)
	}
	live := injector.NewLiveValues(start)
	var mu sync.Mutex
	var events []string
	record := func(ref *corev1.ObjectReference, typ, reason, msg string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ref.Name+" "+typ+" "+reason+" "+msg)
	}
	reg := prometheus.NewRegistry()
	w := newConfigWatcher(client, "linkerd", nil, fileAnchors, live, record, reg,
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.start(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := live.Load(); got.IdentityTrustAnchorsPEM != a1 || got.Proxy.LogLevel != "info" {
		t.Fatalf("after the first listing: anchors from the ConfigMap %v, log level %q", got.IdentityTrustAnchorsPEM == a1, got.Proxy.LogLevel)
	}
	rejected := func(name string) float64 { return testutil.ToFloat64(w.reloads.WithLabelValues(name, "rejected")) }
	update := func(name, key, value string) {
		t.Helper()
		if _, err := client.CoreV1().ConfigMaps("linkerd").Update(context.Background(), cm(name, key, value), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	steps := []struct {
		name       string
		configMap  string
		key, value string
		refused    bool
		want       func(inject.Values) bool
	}{
		{"new trust roots", compat.TrustRootsConfigMap, compat.TrustRootsKey, a2, false,
			func(v inject.Values) bool { return v.IdentityTrustAnchorsPEM == a2 }},
		{"trust roots that are not PEM", compat.TrustRootsConfigMap, compat.TrustRootsKey, "not a certificate", true,
			func(v inject.Values) bool { return v.IdentityTrustAnchorsPEM == a2 }},
		{"trust roots without the key", compat.TrustRootsConfigMap, "other.crt", a1, true,
			func(v inject.Values) bool { return v.IdentityTrustAnchorsPEM == a2 }},
		{"new values", compat.ConfigConfigMap, compat.ConfigValuesKey, "proxy:\n  logLevel: debug\ndisableIPv6: false\n", false,
			func(v inject.Values) bool {
				return v.Proxy.LogLevel == "debug" && !v.DisableIPv6 && v.IdentityTrustAnchorsPEM == a2 && v.ControllerNamespace == "linkerd"
			}},
		{"values that do not decode", compat.ConfigConfigMap, compat.ConfigValuesKey, "proxy: 5\n", true,
			func(v inject.Values) bool { return v.Proxy.LogLevel == "debug" }},
	}
	for _, s := range steps {
		before := rejected(s.configMap)
		update(s.configMap, s.key, s.value)
		if s.refused {
			poll.Until(t, 5*time.Second, s.name+": counted as rejected", func() bool { return rejected(s.configMap) == before+1 })
		}
		poll.Until(t, 5*time.Second, s.name+": values as expected", func() bool { return s.want(live.Load()) })
	}
	mu.Lock()
	n := len(events)
	for _, e := range events {
		if !strings.Contains(e, " Warning "+EventReasonConfigRejected+" ") || !strings.Contains(e, "last good configuration") {
			t.Errorf("event %q", e)
		}
	}
	mu.Unlock()
	if n != 3 {
		t.Errorf("%d Warning events, want 3 (one per refused change)", n)
	}

	// A deleted ConfigMap leaves the last good values in place.
	if err := client.CoreV1().ConfigMaps("linkerd").Delete(context.Background(), compat.TrustRootsConfigMap, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "deletion counted", func() bool {
		return testutil.ToFloat64(w.reloads.WithLabelValues(compat.TrustRootsConfigMap, "deleted")) == 1
	})
	if got := live.Load().IdentityTrustAnchorsPEM; got != a2 {
		t.Error("anchors changed when their ConfigMap was deleted")
	}
}

// TestConfigWatcherSyncTimeout: a watch that never lists (here: a context
// already ended) is an error naming the ConfigMaps, not a silent hang.
func TestConfigWatcherSyncTimeout(t *testing.T) {
	anchors := newCAPEM(t)
	v, err := injectorValues(nil, anchors, "linkerd")
	if err != nil {
		t.Fatal(err)
	}
	w := newConfigWatcher(fake.NewClientset(), "linkerd", nil, anchors, injector.NewLiveValues(v), nil, prometheus.NewRegistry(), slog.Default())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.start(ctx, time.Second); err == nil || !strings.Contains(err.Error(), compat.TrustRootsConfigMap) {
		t.Errorf("start = %v, want an error naming the ConfigMaps", err)
	}
}

// TestInjectorValues: what the injector refuses at start and on reload.
func TestInjectorValues(t *testing.T) {
	anchors := newCAPEM(t)
	tests := []struct {
		name       string
		values     string
		anchors    string
		wantErr    string
		wantLogLvl string
	}{
		{name: "defaults and anchors", anchors: anchors, wantLogLvl: "warn,linkerd=info"},
		{name: "anchors in the values", values: "identityTrustAnchorsPEM: |\n" + indent(anchors), wantLogLvl: "warn,linkerd=info"},
		{name: "values override", values: "proxy: {logLevel: debug}", anchors: anchors, wantLogLvl: "debug"},
		{name: "no anchors", values: "proxy: {logLevel: debug}", wantErr: "no trust anchors"},
		{name: "anchors not PEM", anchors: "garbage", wantErr: "trust anchors: no PEM CERTIFICATE"},
		{name: "values not YAML of the right shape", values: "proxy: 5", anchors: anchors, wantErr: "values:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := injectorValues([]byte(tt.values), tt.anchors, "linkerd")
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case v.Proxy.LogLevel != tt.wantLogLvl || v.ControllerNamespace != "linkerd":
				t.Errorf("log level %q, namespace %q", v.Proxy.LogLevel, v.ControllerNamespace)
			}
		})
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ") + "\n"
}
