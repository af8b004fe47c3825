package local

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder is a TCP relay on loopback that keeps what crosses it, each
// connection's bytes in each direction (bounded): what a capture of the
// wire between a proxy and a controller would show.
type recorder struct {
	addr   string
	target atomic.Pointer[string] // where connections are relayed
	mu     sync.Mutex
	ups    [][]byte // client to server, per connection
	dns    [][]byte
}

const recordLimit = 4 << 20

// startRecorder relays connections to target until the test ends; with
// target "", to the one given later to forward (connections before that are
// refused).
func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: l.Addr().String()}
	r.forward(target)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.relay(c)
		}
	}()
	return r
}

// forward sets where connections accepted from now on are relayed.
func (r *recorder) forward(target string) { r.target.Store(&target) }

func (r *recorder) relay(c net.Conn) {
	defer c.Close()
	target := *r.target.Load()
	if target == "" {
		return
	}
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	r.mu.Lock()
	i := len(r.ups)
	r.ups, r.dns = append(r.ups, nil), append(r.dns, nil)
	r.mu.Unlock()
	copyRec := func(dst, src net.Conn, up bool) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				r.mu.Lock()
				p := &r.dns[i]
				if up {
					p = &r.ups[i]
				}
				if len(*p) < recordLimit {
					*p = append(*p, buf[:n]...)
				}
				r.mu.Unlock()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { copyRec(s, c, true); close(done) }()
	copyRec(c, s, false)
	<-done
}

// streams returns a copy of every connection's two streams.
func (r *recorder) streams() (ups, downs [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.ups {
		ups = append(ups, bytes.Clone(r.ups[i]))
		downs = append(downs, bytes.Clone(r.dns[i]))
	}
	return ups, downs
}

// tlsRecordTypes walks s as TLS records from its first byte to its last
// and counts them by content type; an error says where it is not TLS.
func tlsRecordTypes(s []byte) (map[byte]int, error) {
	count := map[byte]int{}
	for off := 0; off < len(s); {
		if len(s)-off < 5 {
			return count, fmt.Errorf("%d stray bytes at offset %d", len(s)-off, off)
		}
		typ, n := s[off], int(binary.BigEndian.Uint16(s[off+3:]))
		if typ < 20 || typ > 23 || s[off+1] != 3 {
			return count, fmt.Errorf("no TLS record at offset %d: %q", off, s[off:min(len(s), off+32)])
		}
		if off+5+n > len(s) {
			return count, nil // the last record was still in flight
		}
		count[typ]++
		off += 5 + n
	}
	return count, nil
}
