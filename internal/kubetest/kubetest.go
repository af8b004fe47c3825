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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	etcdURL := startEtcd(t, dir, etcdBin)
	issuer := "https://kubernetes.default.svc.cluster.local"
	a := &APIServer{Issuer: issuer, ServiceAccountKey: pki.saKey}
	// kube-apiserver cannot listen on port 0 and say where (--secure-port
	// 0 turns serving off): its port is picked beforehand, and picked
	// again if another process took it first.
	for attempt := 1; ; attempt++ {
		port := pickPort(t)
		logPath := filepath.Join(dir, fmt.Sprintf("kube-apiserver-%d.log", attempt))
		exited := startProcess(t, logPath, apiserverBin,
			"--etcd-servers", etcdURL,
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", port,
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
		a.URL = "https://127.0.0.1:" + port
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
		err = waitReady(client, exited)
		if err == nil {
			return a
		}
		log, _ := os.ReadFile(logPath)
		if errors.Is(err, errExited) && portTaken(string(log)) && attempt < apiserverAttempts {
			t.Logf("kubetest: port %s was taken before kube-apiserver bound it; picking another (attempt %d of %d)", port, attempt+1, apiserverAttempts)
			continue
		}
		t.Fatalf("kubetest: kube-apiserver (attempt %d): %v\n%s", attempt, err, tail(string(log), 3000))
	}
}

// apiserverAttempts bounds the starts of kube-apiserver whose port was
// taken first.
const apiserverAttempts = 3

// pickPort returns a loopback port free when asked (a port for a binary
// that cannot report the one it binds; a test may replace it).
var pickPort = func(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// portTaken says whether a process's log shows that it could not bind.
func portTaken(log string) bool { return strings.Contains(log, "address already in use") }

var errExited = errors.New("exited")

// waitReady waits up to 60 s for the API server to answer /readyz and
// serve the default namespace; errExited if its process ends first.
func waitReady(client kubernetes.Interface, exited <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			// The default namespace and the service account admission need a moment more.
			if _, err := client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver %w before it was ready (last: %v)", errExited, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready within 60s: %v", last)
}

// startEtcd starts etcd with its client and peer listeners on loopback
// port 0 and returns its client URL, which it logs once serving.
func startEtcd(t testing.TB, dir, bin string) string {
	t.Helper()
	logPath := filepath.Join(dir, "etcd.log")
	const port0 = "http://127.0.0.1:0"
	exited := startProcess(t, logPath, bin, "--logger", "zap", "--log-outputs", "stderr",
		"--data-dir", filepath.Join(dir, "etcd"), "--name", "kubetest",
		"--listen-client-urls", port0, "--advertise-client-urls", port0,
		"--listen-peer-urls", port0, "--initial-advertise-peer-urls", port0,
		"--initial-cluster", "kubetest="+port0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _ := os.ReadFile(logPath)
		if addr := etcdClientAddr(log); addr != "" {
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("kubetest: etcd exited before serving:\n%s", tail(string(log), 3000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: etcd did not say where it serves clients within 30s:\n%s", tail(string(log), 3000))
		}
	}
}

// etcdClientAddr finds, in etcd's JSON log, the address it serves clients
// on ("serving client traffic insecurely…", "address": host:port).
func etcdClientAddr(log []byte) string {
	for _, line := range bytes.Split(log, []byte("\n")) {
		var e struct {
			Msg     string `json:"msg"`
			Address string `json:"address"`
		}
		if json.Unmarshal(line, &e) == nil && strings.HasPrefix(e.Msg, "serving client traffic") && e.Address != "" {
			return e.Address
		}
	}
	return ""
}

// startProcess runs a process, stopping it by pid (SIGTERM, then SIGKILL)
// when the test ends. The channel returned is closed when it has exited.
func startProcess(t testing.TB, logPath, bin string, args ...string) <-chan struct{} {
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
	return done
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
