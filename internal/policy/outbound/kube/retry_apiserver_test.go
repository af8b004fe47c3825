package kube_test

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftmesh/weft/internal/route"
)

const retryRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-retry, namespace: shop}
spec:
  parentRefs: [{name: web, kind: Service, group: core, port: 80}]
  rules:
  - retry: {codes: [503], attempts: 3, backoff: 100ms}
    backendRefs: [{name: web, port: 80}]
`

// TestGatewayRetryField: HTTPRoute's rules[].retry (Gateway API
// experimental channel) reaches proxies when weft-crds installs that
// channel (gatewayAPIChannel: experimental); with the default standard
// channel the API server drops the field, so the rule has no retry.
func TestGatewayRetryField(t *testing.T) {
	for _, tt := range []struct {
		channel string
		want    bool
	}{{"standard", false}, {"experimental", true}} {
		t.Run(tt.channel, func(t *testing.T) {
			c := startClusterWith(t, map[string]any{"gatewayAPIChannel": tt.channel})
			c.namespace(t, "shop")
			c.service(t, "shop", "web", nil)
			obj := c.apply(t, retryRoute)
			rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
			_, kept := rules[0].(map[string]any)["retry"]
			if kept != tt.want {
				t.Fatalf("the API server kept rules[0].retry: %v, want %v", kept, tt.want)
			}
			tab := c.watch(t, "web.shop.svc.cluster.local:80", "").await(t, "the route", func(tab *route.Table) bool { return len(tab.HTTP) == 1 })
			got := tab.HTTP[0].Rules[0].Retry
			if !tt.want {
				if got != nil {
					t.Errorf("retry %+v from a route whose field was dropped", *got)
				}
				return
			}
			if got == nil || got.Limit != 3 || got.Backoff != 100*time.Millisecond || !slices.Equal(got.HTTPStatuses, []uint16{503}) {
				t.Errorf("retry = %+v, want 503 retried 3 times with a 100ms backoff", got)
			}
		})
	}
}
