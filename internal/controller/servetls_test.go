package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/controlclient"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	"github.com/weftmesh/weft/internal/serving"
)

const (
	dstToken   = "dst-token-0123456789abcdef"
	webToken   = "web-token-0123456789abcdef"
	webID      = "web.shop.serviceaccount.identity.linkerd.cluster.local"
	testDstID  = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local"
	apiAddr    = "198.18.0.7:8080"
	apiAuthity = "api.shop.svc.cluster.local:80"
)

var controlTokens = map[string]string{dstToken: "linkerd/linkerd-destination", webToken: "shop/web"}

// reservedAddr is a loopback address whose port is bound but not
// listening: connections to it are refused, as if nothing were there, yet
// no other process can take the port; listen makes it listen. For the
// identity service, which the destination must be told before it starts.
func reservedAddr(t *testing.T) (addr string, listen func() net.Listener) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "reserved port")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	return addr, func() net.Listener {
		t.Helper()
		if err := syscall.Listen(fd, 128); err != nil {
			t.Fatal(err)
		}
		l, err := net.FileListener(f)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// firstUpdate watches apiAuthity over conn and returns the first update
// or the error, within 5 s.
func firstUpdate(conn *grpc.ClientConn) (*destinationv1.Update, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := destinationv1.NewDestinationClient(conn).Watch(ctx, &destinationv1.WatchRequest{Target: apiAuthity})
	if err != nil {
		return nil, err
	}
	return s.Recv()
}

// runDestination runs `weft-controller destination` (registry backend)
// in TLS mode against the identity service at idAddr, and returns its gRPC
// and admin addresses.
func runDestination(t *testing.T, idAddr string, anchorsPEM []byte) (string, string) {
	t.Helper()
	registry := writeFile(t, "registry.yaml", fmt.Sprintf("services:\n- name: %s\n  endpoints:\n  - {addr: %q, meshed: true, identity: %s}\n",
		apiAuthity, apiAddr, "api.shop.serviceaccount.identity.linkerd.cluster.local"))
	o := DestinationOptions{Registry: registry, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Reload: time.Second,
		ClusterDomain: "cluster.local", ControllerNS: compat.DefaultControlPlaneNamespace, TrustDomain: "cluster.local",
		TLS: ServingIdentity{IdentityAddr: idAddr, TokenFile: writeFile(t, "token", dstToken),
			AnchorsFile: writeFile(t, "ca.crt", string(anchorsPEM))}}
	return startDestination(t, o)
}

// startDestination runs RunDestination with o in this process until the
// test ends, and returns its gRPC and admin addresses.
func startDestination(t *testing.T, o DestinationOptions) (string, string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	ctx, cancel := context.WithCancel(serving.WithAddrFile(context.Background(), addrFile))
	done := make(chan error, 1)
	go func() { done <- RunDestination(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := result(t, done); err != nil {
			t.Errorf("RunDestination: %v", err)
		}
	})
	return listening(t, addrFile, "destination")
}

// listening reads the gRPC and admin addresses a component bound to port 0
// wrote to its address file.
func listening(t *testing.T, addrFile, component string) (addr, admin string) {
	t.Helper()
	addrs, err := serving.ReadAddrFile(addrFile, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[component+" gRPC server"], addrs[component+" admin server"]
}

// handshake completes a TLS handshake with addr and reads: in TLS 1.3 a
// server refuses the client's certificate after the client's side of the
// handshake is done, so its alert arrives on the first read.
func handshake(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

func readyCode(admin string) int {
	resp, err := http.Get("http://" + admin + "/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDestinationServesMTLS runs the destination controller in TLS mode
// with a real identity service on loopback. It starts before the identity
// service (the control plane's bootstrap): not ready, proxies refused; once
// the identity service is up it obtains its certificate, becomes ready, and
// the proxy's own dial code gets its stream. Clients without a certificate,
// with one from another root, in plaintext, or expecting another server
// identity are refused.
func TestDestinationServesMTLS(t *testing.T) {
	ca := identitytest.NewCA(t, time.Hour, controlTokens)
	idAddr, idListen := reservedAddr(t)
	dstAddr, dstAdmin := runDestination(t, idAddr, ca.AnchorsPEM)

	// Bootstrap: no identity service yet.
	time.Sleep(time.Second)
	if code := readyCode(dstAdmin); code != http.StatusServiceUnavailable {
		t.Errorf("/ready before the destination has a certificate = %d, want 503", code)
	}
	ca.ServeListener(t, idListen())
	proxyID := identitytest.Certified(t, ca.Client(t), ca.Anchors, webID, webToken)
	conn, err := controlclient.Dial(dstAddr, testDstID, proxyID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitReady(t, dstAdmin)
	up, err := firstUpdate(conn)
	if err != nil {
		t.Fatalf("proxy with a valid certificate: %v", err)
	}
	if eps := up.GetAdd().GetEndpoints(); len(eps) != 1 || eps[0].GetAddr() != apiAddr {
		t.Errorf("first update = %v, want the endpoint %s", up, apiAddr)
	}

	other := identitytest.StartCA(t, time.Hour, controlTokens)
	otherID := identitytest.Certified(t, other.Client(t), other.Anchors, webID, webToken)
	noCert := &tls.Config{ServerName: testDstID, RootCAs: ca.Anchors, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}
	otherRoot := noCert.Clone()
	otherRoot.Certificates = []tls.Certificate{*otherID.Certificate()}
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		tls   *tls.Config // the same handshake, raw: the server's reason
		want  string      // in the raw handshake's (or read's) error
	}{
		{"no client certificate", credentials.NewTLS(noCert), noCert, "certificate required"},
		{"certificate from another root", credentials.NewTLS(otherRoot), otherRoot, "unknown certificate authority"},
		{"plaintext", insecure.NewCredentials(), nil, ""},
		{"server is not the configured identity", credentials.NewTLS(controlclient.ClientTLS(proxyID, ca.Name)),
			controlclient.ClientTLS(proxyID, ca.Name), "not " + ca.Name},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := grpc.NewClient(dstAddr, grpc.WithTransportCredentials(tc.creds))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if up, err := firstUpdate(c); err == nil {
				t.Fatalf("got an update (%v), want the connection refused", up)
			}
			if tc.tls == nil {
				return
			}
			if err := handshake(dstAddr, tc.tls); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("raw handshake: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// The refused clients did not disturb the valid one.
	if _, err := firstUpdate(conn); err != nil {
		t.Errorf("proxy with a valid certificate, again: %v", err)
	}
}

// TestPlaintextIsExplicit: without --plaintext a controller needs its trust
// anchors; with it, it serves plaintext and is ready at once.
func TestPlaintextIsExplicit(t *testing.T) {
	o := DestinationOptions{Registry: writeFile(t, "registry.yaml", "services: []\n"), Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Reload: time.Second, TLS: ServingIdentity{AnchorsFile: filepath.Join(t.TempDir(), "missing.crt")}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := RunDestination(context.Background(), o, log); err == nil || !strings.Contains(err.Error(), "--plaintext") {
		t.Errorf("RunDestination without anchors = %v, want an error naming --plaintext", err)
	}
	o.TLS = ServingIdentity{Plaintext: true}
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	ctx, cancel := context.WithCancel(serving.WithAddrFile(context.Background(), addrFile))
	done := make(chan error, 1)
	go func() { done <- RunDestination(ctx, o, log) }()
	addr, admin := listening(t, addrFile, "destination")
	waitReady(t, admin)
	conn, err := controlclient.Dial(addr, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if up, err := firstUpdate(conn); err != nil || up.GetNoEndpoints() == nil {
		t.Errorf("plaintext watch = %v, %v; want no endpoints", up, err)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Errorf("RunDestination: %v", err)
	}
}
