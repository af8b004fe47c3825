//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// sum adds the samples of a Prometheus text exposition whose name and
// labels (key="value") match.
func sum(t *testing.T, metrics, name string, labels ...string) float64 {
	t.Helper()
	v, err := promtext.Sum(metrics, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitInjector waits until the API server reaches the proxy injector:
// a server-side dry run of a pod in an annotated namespace comes back with
// the proxy (dry runs call mutating webhooks). Until the injector's
// endpoints are published, pods are admitted unmeshed (failurePolicy Ignore).
func waitInjector(t *testing.T) {
	t.Helper()
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-probe, annotations: {linkerd.io/inject: enabled}}\n", "apply", "-f", "-")
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: weft-probe}\nspec: {containers: [{name: app, image: weft.local/testapp:dev}]}\n"
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		out, _ := runKubectl(t, pod, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[*].name}")
		if strings.Contains(out, "linkerd-proxy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy injector did not answer admission within 90s (last: %s)", out)
		}
	}
}

// proxyMetrics scrapes a meshed pod's proxy admin port (4191) through the
// API server's pod proxy.
//
// The API server's proxy to the pod can fail for a moment (a dial through
// the node while it is busy), so a failed read is tried again, up to 5
// times a second apart, before the test fails.
func proxyMetrics(t *testing.T, ns, pod string) string {
	t.Helper()
	args := []string{"get", "--raw", "/api/v1/namespaces/" + ns + "/pods/" + pod + ":4191/proxy/metrics"}
	for i := 1; ; i++ {
		out, err := runKubectl(t, "", args...)
		if err == nil {
			return out
		}
		if i == 5 {
			t.Fatalf("kubectl %s: %v (%d tries)\n%s", strings.Join(args, " "), err, i, out)
		}
		time.Sleep(time.Second)
	}
}

// samples maps each labelled sample of the named metrics to its value, by
// series: the name and its labels sorted, as the proxy exposes them
// (request_total{direction="outbound",...}).
func samples(t testing.TB, metrics string, names ...string) map[string]float64 {
	t.Helper()
	all, err := promtext.Parse(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	out := map[string]float64{}
	for _, s := range all {
		if !slices.Contains(names, s.Name) || len(s.Labels) == 0 {
			continue
		}
		pairs := make([]string, 0, len(s.Labels))
		for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
			pairs = append(pairs, k+`="`+esc.Replace(s.Labels[k])+`"`)
		}
		out[s.Name+"{"+strings.Join(pairs, ",")+"}"] = s.Value
	}
	return out
}

// grown lists the series of after whose value grew since before (new
// series included), sorted, each as "series delta".
func grown(before, after map[string]float64) []string {
	var out []string
	for s, v := range after {
		if d := v - before[s]; d > 0 {
			out = append(out, fmt.Sprintf("%s +%g", s, d))
		}
	}
	sort.Strings(out)
	return out
}

// label returns the value of a label in a series ("" if absent).
func label(series, name string) string {
	i := strings.Index(series, "{"+name+`="`)
	if i < 0 {
		i = strings.Index(series, ","+name+`="`)
	}
	if i < 0 {
		return ""
	}
	rest := series[i+len(name)+3:]
	return rest[:strings.IndexByte(rest, '"')]
}

// testApp is a Deployment of the suite's test app, as a document of the
// YAML templates the tests fill with fmt.Sprintf (%[1]s: the namespace).
// Unset fields take the usual values: label app: <Name>, container
// "server", image weft.local/testapp:dev, serving HTTP on 0.0.0.0:8080.
type testApp struct {
	Name        string
	Replicas    int    // 0: not set (the Deployment's default, 1)
	Labels      string // pod labels and selector, a flow map's inside ("app: server, version: v1")
	Annotations string // pod annotations, a flow map's inside
	SA          string // serviceAccountName
	Container   string
	Image       string // "%[2]s" for a template's image argument
	PodIP       bool   // POD_IP in the environment, for "-http", "$(POD_IP):8080"
	Args        string // a flow sequence's inside
	Ports       string // the container's ports, a flow sequence's inside
	More        string // further container fields, each line indented 8 spaces
}

func (a testApp) yaml() string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	labels := or(a.Labels, "app: "+a.Name)
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: %s, namespace: %%[1]s}\nspec:\n", a.Name)
	if a.Replicas > 0 {
		fmt.Fprintf(&b, "  replicas: %d\n", a.Replicas)
	}
	fmt.Fprintf(&b, "  selector: {matchLabels: {%s}}\n  template:\n    metadata:\n      labels: {%s}\n", labels, labels)
	if a.Annotations != "" {
		fmt.Fprintf(&b, "      annotations: {%s}\n", a.Annotations)
	}
	b.WriteString("    spec:\n")
	if a.SA != "" {
		fmt.Fprintf(&b, "      serviceAccountName: %s\n", a.SA)
	}
	fmt.Fprintf(&b, "      containers:\n      - name: %s\n        image: %s\n        imagePullPolicy: IfNotPresent\n",
		or(a.Container, "server"), or(a.Image, "weft.local/testapp:dev"))
	if a.PodIP {
		b.WriteString("        env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n")
	}
	fmt.Fprintf(&b, "        args: [%s]\n        ports: [%s]\n", or(a.Args, `"-http", "0.0.0.0:8080"`), or(a.Ports, "{containerPort: 8080}"))
	b.WriteString(a.More)
	return b.String()
}

// testService is the Service in front of a testApp.
type testService struct {
	Name        string
	Annotations string // a flow map's inside
	Selector    string // a flow map's inside; default app: <Name>
	Ports       string // a flow sequence's inside; default port 80 to 8080
}

func (s testService) yaml() string {
	sel, ports := s.Selector, s.Ports
	if sel == "" {
		sel = "app: " + s.Name
	}
	if ports == "" {
		ports = "{port: 80, targetPort: 8080}"
	}
	meta := fmt.Sprintf("{name: %s, namespace: %%[1]s}", s.Name)
	if s.Annotations != "" {
		meta = fmt.Sprintf("{name: %s, namespace: %%[1]s, annotations: {%s}}", s.Name, s.Annotations)
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: %s\nspec:\n  selector: {%s}\n  ports: [%s]\n", meta, sel, ports)
}

// testNamespace is a template's namespace (%[1]s) annotated for
// injection, and with Annotations (a flow map's inside), followed by a
// ServiceAccount for each of SAs.
type testNamespace struct {
	Annotations string
	SAs         []string
}

func (n testNamespace) yaml() string {
	ann := "linkerd.io/inject: enabled"
	if n.Annotations != "" {
		ann += ", " + n.Annotations
	}
	docs := []string{fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %%[1]s\n  annotations: {%s}\n", ann)}
	for _, sa := range n.SAs {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %%[1]s}\n", sa))
	}
	return yamlDocs(docs...)
}

// meshedNamespace is a namespace annotated for injection, with the
// ServiceAccount client the tests' client Jobs run as (%[1]s: the
// namespace).
var meshedNamespace = testNamespace{SAs: []string{"client"}}.yaml()

// testClient is a template's idle client pod: the test app (image %[2]s)
// serving only on 127.0.0.1:9090, for kubectl exec to call from; SA is its
// ServiceAccount ("" for the default), Annotations a flow map's inside.
type testClient struct {
	Name, SA, Annotations string
}

func (c testClient) yaml() string {
	meta := fmt.Sprintf("{name: %s, namespace: %%[1]s}", c.Name)
	if c.Annotations != "" {
		meta = fmt.Sprintf("{name: %s, namespace: %%[1]s, annotations: {%s}}", c.Name, c.Annotations)
	}
	spec := "spec:\n"
	if c.SA != "" {
		spec += "  serviceAccountName: " + c.SA + "\n"
	}
	return "apiVersion: v1\nkind: Pod\nmetadata: " + meta + "\n" + spec +
		"  containers:\n  - {name: client, image: %[2]s, imagePullPolicy: IfNotPresent, args: [\"-http\", \"127.0.0.1:9090\"]}\n"
}

// yamlDocs joins YAML documents into one stream.
func yamlDocs(docs ...string) string {
	for i, d := range docs {
		docs[i] = strings.TrimSuffix(d, "\n") + "\n"
	}
	return strings.Join(docs, "---\n")
}
