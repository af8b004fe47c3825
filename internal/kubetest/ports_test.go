package kubetest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAPIServerPortTaken: when the port picked for kube-apiserver is taken
// before it binds (here: held by the test), the start is retried on
// another port and the API server serves there.
func TestAPIServerPortTaken(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	var picked []string
	orig := pickPort
	pickPort = func(t testing.TB) string {
		p := taken
		if len(picked) > 0 {
			p = orig(t)
		}
		picked = append(picked, p)
		return p
	}
	defer func() { pickPort = orig }()

	a := StartAPIServer(t)
	if len(picked) != 2 {
		t.Fatalf("ports picked %v, want the taken one then another", picked)
	}
	if want := "https://127.0.0.1:" + picked[1]; a.URL != want {
		t.Errorf("URL %s, want %s", a.URL, want)
	}
	if _, err := a.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("the API server on the second port: %v", err)
	}
	logs, _ := filepath.Glob(filepath.Join(filepath.Dir(a.Kubeconfig), "kube-apiserver-1.log"))
	if len(logs) != 1 {
		t.Fatalf("no log of the first attempt")
	}
	first, _ := os.ReadFile(logs[0])
	if !portTaken(string(first)) || !strings.Contains(string(first), taken) {
		t.Errorf("the first attempt's log does not say port %s was in use:\n%s", taken, tail(string(first), 2000))
	}
}

// TestEtcdClientAddr: the client address is read from etcd's JSON log,
// not the peer's or another line's.
func TestEtcdClientAddr(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{"served", `{"level":"info","msg":"serving peer traffic","address":"127.0.0.1:37121"}
{"level":"info","msg":"now serving peer/client/metrics","listen-client-urls":["http://127.0.0.1:0"]}
{"level":"info","msg":"serving client traffic insecurely; this is strongly discouraged!","address":"127.0.0.1:36385"}
`, "127.0.0.1:36385"},
		{"not yet", `{"level":"info","msg":"serving peer traffic","address":"127.0.0.1:37121"}
`, ""},
		{"not JSON", "2026-11-30 18:48:54 N | embed: serving insecure client requests on 127.0.0.1:41903\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := etcdClientAddr([]byte(tt.log)); got != tt.want {
				t.Errorf("etcdClientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}
