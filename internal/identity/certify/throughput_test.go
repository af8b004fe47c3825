package certify

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// BenchmarkAEAD is the ceiling of the record layer: sealing and opening
// one full TLS record's payload (16 KiB) with each AEAD TLS 1.3 offers,
// on one core, no I/O. Run with -cpu 1.
func BenchmarkAEAD(b *testing.B) {
	key := make([]byte, 32)
	aead := func(name string) cipher.AEAD {
		var a cipher.AEAD
		var err error
		switch name {
		case "AES-128-GCM", "AES-256-GCM":
			n := 16
			if name == "AES-256-GCM" {
				n = 32
			}
			blk, berr := aes.NewCipher(key[:n])
			if berr != nil {
				b.Fatal(berr)
			}
			a, err = cipher.NewGCM(blk)
		default:
			a, err = chacha20poly1305.New(key)
		}
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	for _, name := range []string{"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"} {
		a := aead(name)
		nonce := make([]byte, a.NonceSize())
		plain := make([]byte, 16<<10)
		sealed := a.Seal(nil, nonce, plain, nil)
		b.Run(name+"/seal", func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			out := make([]byte, 0, len(sealed))
			for b.Loop() {
				out = a.Seal(out[:0], nonce, plain, nil)
			}
		})
		b.Run(name+"/open", func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			out := make([]byte, 0, len(plain))
			for b.Loop() {
				var err error
				if out, err = a.Open(out[:0], nonce, sealed, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTLSThroughput moves bulk data through crypto/tls over loopback
// TCP, both ends in this process (with -cpu 1: one core encrypts, decrypts
// and runs both sockets' kernel work, as the bench pins both proxies of a
// pair to one core). "mesh" is what two proxies negotiate (the mesh
// configurations, TLS 1.3: AES-128-GCM on a CPU with AES instructions,
// Go's choice, not configurable in TLS 1.3); the TLS 1.2 rows force each
// AEAD to compare them in the same record layer; "plaintext" is the same
// copy without TLS.
func BenchmarkTLSThroughput(b *testing.B) {
	svc, anchors := meshService(b)
	web, api := certified(b, svc, anchors, webID), certified(b, svc, anchors, apiID)
	tls12 := func(suite uint16) (*tls.Config, *tls.Config) {
		srv := api.ServerConfig()
		srv.MinVersion, srv.MaxVersion, srv.CipherSuites = tls.VersionTLS12, tls.VersionTLS12, []uint16{suite}
		cli := web.ClientConfig(apiID)
		cli.MinVersion, cli.MaxVersion, cli.CipherSuites = tls.VersionTLS12, tls.VersionTLS12, []uint16{suite}
		return srv, cli
	}
	for _, tc := range []struct {
		name    string
		configs func() (*tls.Config, *tls.Config)
	}{
		{"plaintext", func() (*tls.Config, *tls.Config) { return nil, nil }},
		{"mesh-tls13", func() (*tls.Config, *tls.Config) {
			return api.MeshServerConfig("test/1"), web.MeshClientConfig(apiID, "bench", "test/1")
		}},
		{"tls12-AES-128-GCM", func() (*tls.Config, *tls.Config) {
			return tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		}},
		{"tls12-AES-256-GCM", func() (*tls.Config, *tls.Config) {
			return tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
		}},
		{"tls12-ChaCha20-Poly1305", func() (*tls.Config, *tls.Config) {
			return tls12(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srvCfg, cliCfg := tc.configs()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			suite := make(chan string, 1)
			done := make(chan error, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				var r io.Reader = c
				if srvCfg != nil {
					s := tls.Server(c, srvCfg)
					if err := s.Handshake(); err != nil {
						done <- err
						return
					}
					suite <- tls.CipherSuiteName(s.ConnectionState().CipherSuite)
					r = s
				}
				buf := make([]byte, 1<<20)
				_, err = io.CopyBuffer(io.Discard, r, buf)
				done <- err
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			var w io.WriteCloser = c
			if cliCfg != nil {
				tc := tls.Client(c, cliCfg)
				if err := tc.Handshake(); err != nil {
					b.Fatal(err)
				}
				b.Log(<-suite)
				w = tc
			}
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.TCPConn).CloseWrite()
			if err := <-done; err != nil {
				b.Fatal(fmt.Errorf("reader: %w", err))
			}
		})
	}
}
