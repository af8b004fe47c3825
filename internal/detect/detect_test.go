package detect

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// clientHello captures the first flight of a real TLS client.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	buf := make([]byte, 4096)
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	return buf[:n]
}

func TestClassify(t *testing.T) {
	hello := clientHello(t, "web.example.com")
	tests := []struct {
		name     string
		in       string
		want     Protocol
		wantDone bool
	}{
		{"empty", "", Opaque, false},
		{"GET", "GET / HTTP/1.1\r\n", HTTP1, true},
		{"POST HTTP/1.0", "POST /x HTTP/1.0\r\nHost: a\r\n", HTTP1, true},
		{"custom method", "PURGE /cache HTTP/1.1\r\n", HTTP1, true},
		{"lowercase token is a valid method", "get / HTTP/1.1\r\n", HTTP1, true},
		{"LF only", "GET / HTTP/1.1\n", HTTP1, true},
		{"partial method", "GE", Opaque, false},
		{"partial line", "GET /index.html HTT", Opaque, false},
		{"HTTP/2 version in HTTP/1 line", "GET / HTTP/2.0\r\n", Opaque, true},
		{"h2 preface", string(h2Preface), HTTP2, true},
		{"h2 preface prefix", "PRI * HTTP/2.0\r\n", Opaque, false},
		{"PRI with an HTTP/1 version is left to the HTTP server", "PRI * HTTP/1.1\r\n", HTTP1, true},
		{"TLS", string(hello), TLS, true},
		{"TLS prefix", "\x16\x03", Opaque, false},
		{"redis", "*1\r\n$4\r\nPING\r\n", Opaque, true},
		{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", Opaque, true},
		{"binary garbage", "\xde\xad\xbe\xef", Opaque, true},
		{"method too long", string(bytes.Repeat([]byte("A"), 40)), Opaque, true},
		{"control char in target", "GET /\x01", Opaque, true},
		{"SSH banner", "SSH-2.0-OpenSSH_9.2\r\n", Opaque, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done := Classify([]byte(tt.in))
			if got != tt.want || done != tt.wantDone {
				t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.in, got, done, tt.want, tt.wantDone)
			}
		})
	}
}

func TestParseSNI(t *testing.T) {
	hello := clientHello(t, "web.example.com")
	if sni, complete, ok := ParseSNI(hello); sni != "web.example.com" || !complete || !ok {
		t.Errorf("ParseSNI = %q, %v, %v; want web.example.com", sni, complete, ok)
	}
	for _, n := range []int{0, 3, 5, 40, len(hello) - 1} {
		if _, complete, ok := ParseSNI(hello[:n]); complete || !ok {
			t.Errorf("prefix of %d bytes: complete=%v ok=%v, want need-more", n, complete, ok)
		}
	}
	noSNI := clientHello(t, "")
	if sni, complete, ok := ParseSNI(noSNI); sni != "" || !complete || ok {
		t.Errorf("no SNI: %q, %v, %v; want complete without SNI", sni, complete, ok)
	}
	bad := bytes.Clone(hello)
	bad[6] = 0xff // corrupt the handshake length
	if _, complete, ok := ParseSNI(bad); !complete || ok {
		t.Errorf("corrupt length: complete=%v ok=%v, want malformed", complete, ok)
	}
}

func pipeTCP(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestDetectByteByByte(t *testing.T) {
	client, server := pipeTCP(t)
	req := "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
	go func() {
		for i := range len(req) {
			client.Write([]byte{req[i]})
			time.Sleep(time.Millisecond)
		}
	}()
	res, c, err := Detect(server, 2*time.Second)
	if err != nil || res.Protocol != HTTP1 {
		t.Fatalf("Detect = %+v, %v; want HTTP1", res, err)
	}
	r, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil || r.URL.Path != "/slow" {
		t.Fatalf("replayed request: %v %v", r, err)
	}
}

func TestDetectTLSRecordsSNI(t *testing.T) {
	client, server := pipeTCP(t)
	hello := clientHello(t, "api.shop.serviceaccount.identity.linkerd.cluster.local")
	go func() { client.Write(hello[:10]); time.Sleep(5 * time.Millisecond); client.Write(hello[10:]) }()
	res, c, err := Detect(server, 2*time.Second)
	if err != nil || res.Protocol != TLS || res.SNI != "api.shop.serviceaccount.identity.linkerd.cluster.local" {
		t.Fatalf("Detect = %+v, %v", res, err)
	}
	if !bytes.Equal(c.Peeked(), hello) {
		t.Error("peeked bytes differ from the ClientHello")
	}
}

func TestDetectTimeoutThenServerFirst(t *testing.T) {
	client, server := pipeTCP(t)
	start := time.Now()
	res, c, err := Detect(server, 100*time.Millisecond)
	if err != nil || !res.TimedOut || res.Protocol != Opaque {
		t.Fatalf("Detect = %+v, %v; want a timed-out opaque result", res, err)
	}
	if el := time.Since(start); el < 90*time.Millisecond || el > time.Second {
		t.Errorf("detection took %v, want about 100ms", el)
	}
	client.Write([]byte("late"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
		t.Errorf("read after timeout = %q, %v (deadline must be cleared)", buf, err)
	}
}

func TestDetectClosedBeforeAnyByte(t *testing.T) {
	client, server := pipeTCP(t)
	client.Close()
	if _, _, err := Detect(server, time.Second); err == nil {
		t.Error("want an error for a connection closed before any byte")
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", string(h2Preface), "\x16\x03\x01\x00", "*1\r\n", "PRI * HTTP/2.0\r\n"} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		p, done := Classify(b)
		if !done || len(b) == 0 {
			return
		}
		// Once decided, more bytes never change the answer.
		more := append(bytes.Clone(b), "more bytes\r\n"...)
		if p2, done2 := Classify(more); p2 != p || !done2 {
			t.Errorf("Classify(%q) = %v but with more bytes %v, %v", b, p, p2, done2)
		}
		_ = cut
	})
}

func FuzzParseSNI(f *testing.F) {
	f.Add(clientHello(f, "seed.example.com"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseSNI(b) // must not panic
	})
}

// FuzzHTTP1RequestHead feeds arbitrary heads through detection and, when
// detected as HTTP/1, through Go's request parser that the proxy uses.
func FuzzHTTP1RequestHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, _ := Classify(b); p == HTTP1 {
			if r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b))); err == nil {
				io.Copy(io.Discard, r.Body)
			}
		}
	})
}

// TestDetectTLS: on a declared port the first byte decides: a request
// begun slowly is not waited for, a ClientHello is read for its SNI, and
// silence ends at the timeout.
func TestDetectTLS(t *testing.T) {
	hello := clientHello(t, "web.example.com")
	tests := []struct {
		name     string
		send     []byte
		want     Protocol
		sni      string
		timedOut bool
	}{
		{"a partial HTTP request", []byte("GE"), Opaque, "", false},
		{"a ClientHello", hello, TLS, "web.example.com", false},
		{"silence", nil, Opaque, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := pipeTCP(t)
			client.Write(tt.send)
			timeout := 300 * time.Millisecond
			start := time.Now()
			res, dc, err := DetectTLS(server, timeout)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if res.Protocol != tt.want || res.SNI != tt.sni || res.TimedOut != tt.timedOut {
				t.Errorf("DetectTLS = %+v, want %v sni %q timed out %v", res, tt.want, tt.sni, tt.timedOut)
			}
			if !tt.timedOut && took >= timeout {
				t.Errorf("took %v: decided on the first bytes, it must not wait for the timeout", took)
			}
			if got := dc.Peeked(); !bytes.Equal(got, tt.send) {
				t.Errorf("replayed %q, want %q", got, tt.send)
			}
		})
	}
}
