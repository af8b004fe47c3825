package viz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/charts"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/promtext"
)

const (
	apiID = "api.shop.serviceaccount.identity.linkerd.cluster.local"
	webID = "web.shop.serviceaccount.identity.linkerd.cluster.local"
)

var tokens = map[string]string{"web": "web-token-aaaaaaaaaaaaaaaa", "api": "api-token-bbbbbbbbbbbbbbbb"}

// vizMesh is two meshed workloads in namespace shop — web (pod web-0)
// calling api (pod api-0, a backend that fails every 5th request) through
// the destination service over mTLS — a Prometheus scraping both proxies
// with the chart's relabelings, and the metrics API on that Prometheus.
type vizMesh struct {
	bin, dir   string
	webBind    string // web's outbound listener for api
	promURL    string
	apiURL     string // the metrics API
	webAdmin   string
	apiAdmin   string
	apiInbound string // api's inbound proxy (plaintext clients are denied there)
	appHandled atomic.Int64
	// kube is the API server holding the policy controller's Service and
	// routes (nil without Kubernetes binaries).
	kube *kubetest.APIServer
	// controllers are the control plane's admin ports Prometheus scrapes
	// with the chart's linkerd-controller job.
	controllers []scrapeTarget
}

// requirePrometheus skips without Debian's prometheus, except in CI.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs binaries and Prometheus")
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("WEFT_REQUIRE_PROMETHEUS") != "" {
			t.Fatal("prometheus not installed (apt-get install prometheus)")
		}
		t.Skip("prometheus not installed (apt-get install prometheus)")
	}
	return p
}

func newVizMesh(t *testing.T) *vizMesh {
	t.Helper()
	promBin := requirePrometheus(t)
	m := &vizMesh{bin: proctest.Build(t, "../..", "./cmd/weft-proxy", "./cmd/weft-controller", "./cmd/weft"), dir: t.TempDir()}
	now := time.Now()
	root, err := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuer(root, "identity.linkerd.cluster.local", now.Add(-time.Minute), 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.write(t, "tokens", fmt.Sprintf("%s shop/web\n%s shop/api\n", tokens["web"], tokens["api"]))
	anchors, crt, key := m.write(t, "ca.crt", string(root.CertPEM)), m.write(t, "issuer.crt", string(iss.CertPEM)), m.write(t, "issuer.key", string(iss.KeyPEM))
	id := proctest.StartListening(t, "identity", nil, m.bin+"/weft-controller", "identity", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--identity-trust-anchors-file", anchors, "--static-tokens", m.dir+"/tokens", "--issuer-cert", crt, "--issuer-key", key)
	idAddr, idAdmin := id["identity gRPC server"], id["identity admin server"]
	waitReady(t, "http://"+idAdmin+"/ready")
	m.controllers = append(m.controllers, scrapeTarget{addr: idAdmin, ns: "linkerd", pod: "linkerd-identity-0", container: "identity", port: "admin-http"})

	// The application: 2 ms per request, every 5th answered 500.
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Millisecond)
		if m.appHandled.Add(1)%5 == 0 {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })

	var policyEnv []string
	if haveKubeBins() {
		policyEnv = []string{"LINKERD2_PROXY_POLICY_SVC_ADDR=" + startPolicy(t, m)}
	}
	// The destination's registry names api's inbound address, and api's
	// proxy is told the destination's: api's endpoint is added to the
	// registry once its proxy has said where it listens.
	registry := func(endpoints string) string {
		return "services:\n- name: api.shop.svc.cluster.local:80\n  labels: {dst_namespace: shop, dst_service: api}\n  endpoints: " + endpoints + "\n"
	}
	registryPath := m.write(t, "registry.yaml", registry("[]"))
	dst := proctest.StartListening(t, "destination", nil, m.bin+"/weft-controller", "destination", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--registry", registryPath, "--registry-poll", "100ms", "--plaintext") // discovery is not what these tests look at
	dstAddr, dstAdmin := dst["destination gRPC server"], dst["destination admin server"]
	waitReady(t, "http://"+dstAdmin+"/ready")
	m.controllers = append(m.controllers, scrapeTarget{addr: dstAdmin, ns: "linkerd", pod: "linkerd-destination-0", container: "destination", port: "admin-http"})

	proxyEnv := func(sa, pod string) []string {
		return []string{
			"LINKERD2_PROXY_IDENTITY_LOCAL_NAME=" + sa + ".shop.serviceaccount.identity.linkerd.cluster.local",
			"LINKERD2_PROXY_IDENTITY_SVC_ADDR=" + idAddr,
			"LINKERD2_PROXY_IDENTITY_SVC_NAME=linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local",
			"LINKERD2_PROXY_IDENTITY_TOKEN_FILE=" + m.write(t, sa+".token", tokens[sa]),
			"LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=" + string(root.CertPEM),
			"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + dstAddr,
			"_pod_ns=shop", "_pod_name=" + pod,
		}
	}
	// api admits only meshed clients: plaintext requests are denied (viz authz).
	apiProxy := proctest.StartListening(t, "proxy-api", append(proxyEnv("api", "api-0"), "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY=all-authenticated"), m.bin+"/weft-proxy",
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0",
		"--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0", "--inbound-forward", l.Addr().String())
	m.apiAdmin, m.apiInbound = apiProxy["admin"], apiProxy["inbound"]
	loads := func() float64 {
		v, err := promtext.SumAt(context.Background(), "http://"+dstAdmin+"/metrics", "destination_registry_loads_total")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := loads()
	m.write(t, "registry.yaml.new", registry(fmt.Sprintf("[{addr: %q, meshed: true, identity: %s, labels: {dst_pod: api-0, dst_deployment: api}}]", m.apiInbound, apiID)))
	if err := os.Rename(registryPath+".new", registryPath); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the destination loads the registry naming api's inbound", func() bool { return loads() > before })
	web := proctest.StartListening(t, "proxy-web", append(proxyEnv("web", "web-0"), policyEnv...), m.bin+"/weft-proxy", "--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0",
		"--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0", "--bind", "127.0.0.1:0=api.shop.svc.cluster.local:80")
	m.webAdmin, m.webBind = web["admin"], web["bind api.shop.svc.cluster.local:80"]
	waitReady(t, "http://"+m.apiAdmin+"/ready")
	waitReady(t, "http://"+m.webAdmin+"/ready")

	// Prometheus (not Weft's) cannot say where it listens: its port is
	// picked beforehand. The metrics API starts first, so that Prometheus
	// scrapes its admin port.
	promAddr := proctest.FreeAddr(t)
	m.promURL = "http://" + promAddr
	api := proctest.StartListening(t, "metrics-api", nil, m.bin+"/weft-controller", "metrics-api", "--no-kube", "--prometheus-url", m.promURL,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	apiAddr, apiAdminAddr := api["metrics-api server"], api["metrics-api admin server"]
	m.controllers = append(m.controllers,
		scrapeTarget{addr: apiAdminAddr, ns: "linkerd-viz", pod: "metrics-api-0", container: "metrics-api", port: "admin-http"},
		// Another port of a control-plane pod, and a namespace that is not
		// the control plane's: not scraped.
		scrapeTarget{addr: dstAdmin, ns: "linkerd", pod: "linkerd-destination-0", container: "destination", port: "grpc"},
		scrapeTarget{addr: dstAdmin, ns: "shop", pod: "other-0", container: "destination", port: "admin-http"})
	cfg := m.write(t, "prometheus.yml", prometheusConfig(t, m.controllers, []scrapeTarget{
		{addr: m.webAdmin, ns: "shop", pod: "web-0", container: "linkerd-proxy", port: "linkerd-admin",
			labels: map[string]string{"linkerd.io/proxy-deployment": "web", "app": "web", "linkerd.io/control-plane-ns": "linkerd", "pod-template-hash": "5d9f"}},
		{addr: m.apiAdmin, ns: "shop", pod: "api-0", container: "linkerd-proxy", port: "linkerd-admin",
			labels: map[string]string{"linkerd.io/proxy-deployment": "api", "app": "api", "linkerd.io/control-plane-ns": "linkerd"}},
		// The application container's port of the same pod: not scraped.
		{addr: l.Addr().String(), ns: "shop", pod: "api-0", container: "app", port: "http",
			labels: map[string]string{"linkerd.io/proxy-deployment": "api", "linkerd.io/control-plane-ns": "linkerd"}},
		// A proxy of another control plane: not scraped.
		{addr: m.apiAdmin, ns: "shop", pod: "other-0", container: "linkerd-proxy", port: "linkerd-admin",
			labels: map[string]string{"linkerd.io/control-plane-ns": "other"}},
	}))
	proctest.Start(t, "prometheus", nil, promBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(m.dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	waitReady(t, m.promURL+"/-/ready")

	m.apiURL = "http://" + apiAddr
	waitReady(t, "http://"+apiAdminAddr+"/ready")
	return m
}

// scrapeTarget is a target with the metadata Kubernetes service discovery
// would give the pod's container port.
type scrapeTarget struct {
	addr, ns, pod, container, port string
	labels                         map[string]string // the pod's labels
}

// prometheusConfig is a Prometheus configuration with the chart's two
// jobs: linkerd-proxy applies the chart's proxy relabel_configs to targets
// (static targets carrying the __meta_kubernetes_* labels that
// kubernetes_sd_configs, role pod, sets), linkerd-controller its controller
// relabel_configs to controllers.
func prometheusConfig(t *testing.T, controllers, targets []scrapeTarget) string {
	return prometheusJobs(t,
		job{"linkerd-proxy", "static_configs", staticGroups(targets), proxyRelabelRules(t)},
		job{"linkerd-controller", "static_configs", staticGroups(controllers), relabelFile(t, "controller-relabel-configs.yaml")})
}

// staticGroups are static_configs whose targets carry the labels
// Kubernetes pod discovery would give them.
func staticGroups(targets []scrapeTarget) []any {
	var groups []any
	for _, tg := range targets {
		ls := map[string]string{
			"__meta_kubernetes_namespace":                 tg.ns,
			"__meta_kubernetes_pod_name":                  tg.pod,
			"__meta_kubernetes_pod_container_name":        tg.container,
			"__meta_kubernetes_pod_container_port_name":   tg.port,
			"__meta_kubernetes_pod_ready":                 "true",
			"__meta_kubernetes_pod_container_init":        "false",
			"__meta_kubernetes_pod_phase":                 "Running",
			"__meta_kubernetes_pod_controller_kind":       "ReplicaSet",
			"__meta_kubernetes_pod_container_port_number": tg.addr[strings.LastIndex(tg.addr, ":")+1:],
		}
		for k, v := range tg.labels {
			ls["__meta_kubernetes_pod_label_"+sanitize(k)] = v
			ls["__meta_kubernetes_pod_labelpresent_"+sanitize(k)] = "true"
		}
		groups = append(groups, map[string]any{"targets": []string{tg.addr}, "labels": ls})
	}
	return groups
}

// proxyRelabelRules are the chart's proxy relabel_configs for control
// plane linkerd.
func proxyRelabelRules(t *testing.T) []any {
	return relabelFile(t, "proxy-relabel-configs.yaml")
}

// relabelFile is one of the chart's relabel_configs files, rendered for
// control plane linkerd and viz in linkerd-viz.
func relabelFile(t *testing.T, name string) []any {
	t.Helper()
	raw, err := charts.FS.ReadFile("weft-viz/files/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var relabel bytes.Buffer
	if err := template.Must(template.New("relabel").Parse(string(raw))).Execute(&relabel,
		map[string]string{"controlPlaneNamespace": "linkerd", "vizNamespace": "linkerd-viz"}); err != nil {
		t.Fatal(err)
	}
	var rules []any
	if err := yaml.Unmarshal(relabel.Bytes(), &rules); err != nil {
		t.Fatal(err)
	}
	return rules
}

// job is one scrape job: its name, discovery kind and configuration, and
// relabel rules.
type job struct {
	name, discovery string
	config          any
	relabel         []any
}

// prometheusJob is a Prometheus configuration with the job linkerd-proxy:
// the chart's proxy relabel rules over the given discovery.
func prometheusJob(t *testing.T, discovery string, config any) string {
	return prometheusJobs(t, job{"linkerd-proxy", discovery, config, proxyRelabelRules(t)})
}

func prometheusJobs(t *testing.T, jobs ...job) string {
	t.Helper()
	var scrape []any
	for _, j := range jobs {
		scrape = append(scrape, map[string]any{"job_name": j.name, j.discovery: j.config, "relabel_configs": j.relabel})
	}
	cfg := map[string]any{
		"global":         map[string]any{"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
		"scrape_configs": scrape,
	}
	b, err := json.Marshal(cfg) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sanitize is how Kubernetes SD turns a label name into a Prometheus one.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func (m *vizMesh) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(m.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// traffic is what the client counted.
type traffic struct {
	mu    sync.Mutex
	done  []time.Time // completion times
	ok    []bool
	books []bool // the request was for /books/… (route books), else / (route rest)
}

// between counts the requests completed in [from, to) and the successful ones.
func (tr *traffic) between(from, to time.Time) (total, ok int) {
	return tr.count(from, to, func(int) bool { return true })
}

// count is between for the requests keep selects.
func (tr *traffic) count(from, to time.Time, keep func(i int) bool) (total, ok int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i, d := range tr.done {
		if !d.Before(from) && d.Before(to) && keep(i) {
			total++
			if tr.ok[i] {
				ok++
			}
		}
	}
	return total, ok
}

// drive sends rate requests per second through web's proxy to api, paced,
// for d (bounded in time and count), on `conns` keep-alive connections.
func (m *vizMesh) drive(t *testing.T, rate int, d time.Duration, conns int) *traffic {
	t.Helper()
	tr := &traffic{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	stop := time.Now().Add(d)
	max := int(float64(rate)*d.Seconds()) + 1
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var inflight sync.WaitGroup
		for i := 0; i < max && time.Now().Before(stop); i++ {
			<-tick.C
			inflight.Add(1)
			books := i%4 == 3
			path := "/"
			if books {
				path = fmt.Sprintf("/books/%d", i)
			}
			go func() {
				defer inflight.Done()
				resp, err := client.Get("http://" + m.webBind + path)
				ok := false
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode < 500
				}
				tr.mu.Lock()
				tr.done = append(tr.done, time.Now())
				tr.ok = append(tr.ok, ok)
				tr.books = append(tr.books, books)
				tr.mu.Unlock()
			}()
		}
		inflight.Wait()
	}()
	// Its idle connections close before the proxies stop: the Transport
	// may have dialed one it never sent a request on, which web's proxy
	// forwards as opaque TCP once protocol detection times out (10 s),
	// and a proxy drains an open TCP connection for its whole grace
	// period (a goroutine dump of proxy-web, missing its 10 s exit,
	// showed exactly that connection).
	t.Cleanup(func() {
		wg.Wait()
		client.CloseIdleConnections()
	})
	return tr
}

// deadAddr is an address where nothing listens (a metrics API or
// Prometheus that is gone).
func deadAddr(t *testing.T) string { return proctest.FreeAddr(t) }

// waitReady waits up to 30 s for url (a /ready) to answer 200.
func waitReady(t *testing.T, url string) { t.Helper(); proctest.WaitReady(t, url, 30*time.Second) }
