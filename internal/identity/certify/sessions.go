package certify

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// sessionCacheSize bounds the client session cache of one certificate: one
// session per (peer address, peer identity), each holding the peer's
// parsed chain (a few KiB).
const sessionCacheSize = 256

// meshTLS is the mTLS state of one certificate of this proxy: server
// configurations shared by every inbound connection (so their session
// ticket keys are shared and a ticket can be resumed), the ticket key, and
// the client session cache of outbound connections. A new certificate gets
// a new meshTLS: tickets issued and sessions cached under the old one are
// never resumed after a renewal.
type meshTLS struct {
	cert *tls.Certificate
	// counters of handshakes: [server, client][full, resumed]
	counts    [2][2]prometheus.Counter
	ticketKey [32]byte
	sessions  tls.ClientSessionCache

	mu      sync.Mutex
	servers []*tls.Config // one per ALPN list; few
}

func newMeshTLS(cert *tls.Certificate, handshakes *prometheus.CounterVec) (*meshTLS, error) {
	g := &meshTLS{cert: cert, sessions: tls.NewLRUClientSessionCache(sessionCacheSize)}
	for i, side := range []string{"server", "client"} {
		for j, resumed := range []string{"false", "true"} {
			g.counts[i][j] = handshakes.WithLabelValues(side, resumed)
		}
	}
	if _, err := rand.Read(g.ticketKey[:]); err != nil {
		return nil, fmt.Errorf("certify: session ticket key: %w", err)
	}
	return g, nil
}

// MeshServerConfig is the inbound mTLS configuration for connections from
// other proxies, offering alpn: TLS 1.3, the current certificate, a client
// certificate required and verified against the anchors. Unlike
// ServerConfig it is shared by every call with the same ALPN list until
// the certificate is renewed (callers must not modify it), so the session
// tickets it issues resume: a resumed connection skips both certificate
// signatures and chain verifications, still runs a fresh (EC)DHE key
// exchange (psk_dhe_ke), and still reports the client's verified chain
// (Go keeps it in the ticket and checks it against ClientCAs and its
// expiry on resumption). Tickets are sealed with a key of this
// certificate's: a renewal ends them all. Nil before the first certificate.
func (m *Manager) MeshServerConfig(alpn ...string) *tls.Config {
	g := m.mesh.Load()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.servers {
		if slices.Equal(c.NextProtos, alpn) {
			return c
		}
	}
	c := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*g.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.cfg.Anchors,
		NextProtos:   slices.Clone(alpn),
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := requireVerifiedPeer(cs); err != nil {
				return err
			}
			g.count(0, cs.DidResume)
			return nil
		},
	}
	c.SetSessionTicketKeys([][32]byte{g.ticketKey})
	g.servers = append(g.servers, c)
	return c
}

// MeshClientConfig is the outbound mTLS configuration toward the peer
// proxy at addr, which must present serverID. Sessions are cached per
// certificate of this proxy and per (addr, serverID): a session is only
// offered to the address and identity it was established with, and every
// connection, resumed or not, must show a chain verified against the
// anchors naming serverID (VerifyConnection, which Go runs on resumptions
// too, unlike VerifyPeerCertificate). Nil before the first certificate.
func (m *Manager) MeshClientConfig(serverID, addr string, alpn ...string) *tls.Config {
	g := m.mesh.Load()
	if g == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverID,
		RootCAs:    m.cfg.Anchors,
		NextProtos: alpn,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return g.cert, nil
		},
		ClientSessionCache: addrSessions{cache: g.sessions, addr: addr},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := requireVerifiedPeer(cs); err != nil {
				return err
			}
			if err := cs.VerifiedChains[0][0].VerifyHostname(serverID); err != nil {
				return fmt.Errorf("peer is not %s: %w", serverID, err)
			}
			g.count(1, cs.DidResume)
			return nil
		},
	}
}

// count records a verified handshake of side (0 server, 1 client).
func (g *meshTLS) count(side int, resumed bool) {
	if resumed {
		g.counts[side][1].Inc()
	} else {
		g.counts[side][0].Inc()
	}
}

// requireVerifiedPeer refuses a connection whose peer chain was not
// verified against the anchors (in this handshake or the one it resumes).
func requireVerifiedPeer(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return errors.New("peer certificate not verified")
	}
	return nil
}

// addrSessions keys a shared session cache by the peer's address as well
// as the name Go keys it by (ServerName, the peer's identity), so that
// endpoints sharing an identity do not evict each other's sessions or get
// offered tickets only another endpoint can open.
type addrSessions struct {
	cache tls.ClientSessionCache
	addr  string
}

func (a addrSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return a.cache.Get(a.addr + "\x00" + key)
}

func (a addrSessions) Put(key string, cs *tls.ClientSessionState) {
	a.cache.Put(a.addr+"\x00"+key, cs)
}
