package serving

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ls, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

// result waits, bounded, for Run's error.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
		return nil
	}
}

// TestRunDrainsInFlight: when ctx ends, draining runs first, a request in
// flight completes, new connections are refused, and Run returns nil.
func TestRunDrainsInFlight(t *testing.T) {
	l := listen(t)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})}
	var drained atomic.Bool
	causes := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, func(cause error) { causes <- cause; drained.Store(true) }, HTTP("slow server", l, srv, 5*time.Second))
	}()

	type reply struct {
		body string
		err  error
	}
	got := make(chan reply, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			got <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- reply{string(b), err}
	}()
	<-entered
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for !drained.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !drained.Load() {
		t.Fatal("draining was not called after ctx ended")
	}
	if cause := <-causes; cause != nil {
		t.Errorf("draining's cause when ctx ended: got %v, want nil", cause)
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: got (%q, %v), want (\"done\", nil)", r.body, r.err)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run after ctx ended: got %v, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after Run returned")
	}
}

// TestRunReturnsFailure: a server whose listener is closed under it stops
// the others and Run returns its error, naming it and its address; draining
// gets it as the cause.
func TestRunReturnsFailure(t *testing.T) {
	tests := []struct {
		name   string
		broken int // which server's listener is closed
	}{
		{"first server fails", 0},
		{"second server fails", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := []net.Listener{listen(t), listen(t)}
			servers := []Server{HTTP("test main server", ls[0], &http.Server{Handler: http.NotFoundHandler()}, time.Second),
				HTTP("test admin server", ls[1], &http.Server{Handler: http.NotFoundHandler()}, 0)}
			done, causes := make(chan error, 1), make(chan error, 1)
			go func() { done <- Run(context.Background(), func(cause error) { causes <- cause }, servers...) }()
			for _, l := range ls { // both serve before one breaks
				resp, err := http.Get("http://" + l.Addr().String() + "/")
				if err != nil {
					t.Fatalf("%s not serving: %v", l.Addr(), err)
				}
				resp.Body.Close()
			}

			ls[tt.broken].Close()
			err := result(t, done)
			want := servers[tt.broken].Name + " on " + servers[tt.broken].Addr.String()
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run: got %v, want an error naming %q", err, want)
			}
			if cause := <-causes; cause == nil || cause.Error() != err.Error() {
				t.Errorf("draining's cause: got %v, want %v", cause, err)
			}
			if c, err := net.DialTimeout("tcp", ls[1-tt.broken].Addr().String(), time.Second); err == nil {
				c.Close()
				t.Fatalf("%s still accepting after the other server failed", servers[1-tt.broken].Name)
			}
		})
	}
}

// TestAddrFile: Run writes every server's bound address (port 0 resolved)
// before serving, and ReadAddrFile reads it.
func TestAddrFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "addrs.json")
	a, b := listen(t), listen(t)
	ctx, cancel := context.WithCancel(WithAddrFile(context.Background(), path))
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nil, HTTP("one server", a, &http.Server{Handler: http.NotFoundHandler()}, 0),
			HTTP("two server", b, &http.Server{Handler: http.NotFoundHandler()}, 0))
	}()
	got, err := ReadAddrFile(path, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"one server": a.Addr().String(), "two server": b.Addr().String()}
	if len(got) != len(want) || got["one server"] != want["one server"] || got["two server"] != want["two server"] {
		t.Fatalf("address file: got %v, want %v", got, want)
	}
	resp, err := http.Get("http://" + got["two server"] + "/")
	if err != nil {
		t.Fatalf("the reported address does not serve: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestAddrFileErrors: an address file that cannot be written stops the
// servers with an error; a reader gives up when the process has exited or
// the file is not JSON.
func TestAddrFileErrors(t *testing.T) {
	l := listen(t)
	ctx := WithAddrFile(context.Background(), filepath.Join(t.TempDir(), "missing-dir", "addrs.json"))
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, HTTP("web server", l, &http.Server{Handler: http.NotFoundHandler()}, 0)) }()
	if err := result(t, done); err == nil || !strings.Contains(err.Error(), "address file") {
		t.Fatalf("Run with an unwritable address file: got %v, want an address file error", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("serving although the address file could not be written")
	}

	exited := make(chan struct{})
	close(exited)
	start := time.Now()
	if _, err := ReadAddrFile(filepath.Join(t.TempDir(), "never.json"), 10*time.Second, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("reading after the process exited: got %v, want an error saying so", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("reading after the process exited waited %v", d)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("127.0.0.1:80\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadAddrFile(bad, time.Second, nil); err == nil {
		t.Fatalf("reading a file that is not JSON: got %v, want an error", got)
	}
}
