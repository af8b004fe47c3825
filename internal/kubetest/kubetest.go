// Package kubetest starts a real etcd and kube-apiserver for integration
// tests: StartAPIServer gives a test its own API server on loopback, with
// ServiceAccount TokenRequest/TokenReview and admission webhooks working,
// and stops both processes by pid when the test ends.
//
// The binaries come from the project's harness (make k8s-bins builds
// kube-apiserver into $HOME/.cache/weft/bin; etcd is Debian's etcd-server).
// Without them the test is skipped, unless WEFT_REQUIRE_K8S=1, which turns
// the skip into a failure (CI sets it).
package kubetest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APIServer is a running etcd + kube-apiserver.
type APIServer struct {
	URL        string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// Issuer is the ServiceAccount token issuer (--service-account-issuer).
	Issuer string
	// ServiceAccountKey is the PEM key that signs ServiceAccount tokens
	// (for tests that need a validly signed but otherwise bad token).
	ServiceAccountKey string
}

// BinDir is where the harness puts Kubernetes binaries.
func BinDir() string {
	if d := os.Getenv("WEFT_K8S_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "weft", "bin")
}

func missing(t testing.TB, what string) {
	t.Helper()
	msg := what + ": run `make k8s-bins` (and apt-get install etcd-server) to run this test"
	if os.Getenv("WEFT_REQUIRE_K8S") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// StartAPIServer starts etcd and kube-apiserver for t.
func StartAPIServer(t testing.TB) *APIServer {
	t.Helper()
	apiserverBin := filepath.Join(BinDir(), "kube-apiserver")
	if _, err := os.Stat(apiserverBin); err != nil {
		missing(t, "kube-apiserver not found in "+BinDir())
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		missing(t, "etcd not found")
	}
	dir := t.TempDir()
	pki, err := writePKI(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	ports := freePorts(t, 3)
	etcdURL := "http://127.0.0.1:" + ports[0]
	startProcess(t, filepath.Join(dir, "etcd.log"), etcdBin,
		"--data-dir", filepath.Join(dir, "etcd"), "--name", "kubetest",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+ports[1],
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+ports[1],
		"--initial-cluster", "kubetest=http://127.0.0.1:"+ports[1])
	issuer := "https://kubernetes.default.svc.cluster.local"
	startProcess(t, filepath.Join(dir, "kube-apiserver.log"), apiserverBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", ports[2],
		"--cert-dir", filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file", pki.serverCert, "--tls-private-key-file", pki.serverKey,
		"--client-ca-file", pki.ca.CertPath,
		"--service-account-issuer", issuer,
		"--service-account-key-file", pki.saPub,
		"--service-account-signing-key-file", pki.saKey,
		"--service-cluster-ip-range", "198.19.0.0/16",
		"--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--kubelet-preferred-address-types", "InternalIP",
		"--storage-backend", "etcd3")
	a := &APIServer{URL: "https://127.0.0.1:" + ports[2], Issuer: issuer, ServiceAccountKey: pki.saKey}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: a.URL, CertificateAuthorityData: pki.ca.PEM()}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.adminCertPEM, ClientKeyData: pki.adminKeyPEM}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	kc.CurrentContext = "kubetest"
	a.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, a.Kubeconfig); err != nil {
		t.Fatalf("kubetest: kubeconfig: %v", err)
	}
	if a.Config, err = clientcmd.BuildConfigFromFlags("", a.Kubeconfig); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	client, err := kubernetes.NewForConfig(a.Config)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	a.Client = client
	waitReady(t, client, filepath.Join(dir, "kube-apiserver.log"))
	return a
}

func waitReady(t testing.TB, client kubernetes.Interface, logPath string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			// The default namespace and the service account admission need a moment more.
			if _, err := client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
				return
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("kubetest: kube-apiserver not ready within 60s: %v\n%s", last, tail(string(log), 3000))
}

// startProcess runs a process, stopping it by pid (SIGTERM, then SIGKILL)
// when the test ends.
func startProcess(t testing.TB, logPath, bin string, args ...string) {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: starting %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
