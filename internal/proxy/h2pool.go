package proxy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// h2Client sends HTTP/2 requests on client connections it keeps per pool
// name (the request's URL host: an address, identityPool's name for an mTLS
// peer, appPoolKey's inbound), each made by the Transport's NewClientConn
// (its dialer and HTTP/2 settings) and used with ClientConn.RoundTrip. The
// Transport's own RoundTrip looks a request's connection up twice (its
// connection cache, then the HTTP/2 one) and makes a cancelable context and
// parses the authority per request: ~8 % of each proxy's CPU in the h2 mTLS
// pair at max rate (bench/results/issue17.md, "HTTP/2 writes gathered").
//
// A request takes a slot on the first connection of its pool that has one
// (ClientConn.Reserve); when none has, one connection is dialed for the
// pool while its other requests wait for it (and fail with it, but for the
// dialing request's own cancellation). A connection that closes
// (idle timeout, GOAWAY, failure) leaves its pool when next looked at
// (sweepLocked). A request the connection
// did not send is retried on another, as the Transport does: always when
// the connection was no longer usable, and when it is bodiless after a
// GOAWAY or REFUSED_STREAM.
type h2Client struct {
	t *http.Transport

	mu    sync.Mutex
	pools map[string]*h2Pool
}

type h2Pool struct {
	conns   []*http.ClientConn
	dialing *h2Dial // the dial in progress, or nil
}

// h2Dial is a pool's dial in progress: done is closed when it ends, err
// set before that if it failed.
type h2Dial struct {
	done chan struct{}
	err  error
}

// h2MaxSends bounds the sends of one request over connections that turned
// out not to take it.
const h2MaxSends = 4

func newH2Client(t *http.Transport) *h2Client {
	return &h2Client{t: t, pools: map[string]*h2Pool{}}
}

// RoundTrip sends req on a connection of the pool named by req.URL.Host.
func (c *h2Client) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.URL.Host
	for sends := 1; ; sends++ {
		cc, err := c.get(req.Context(), key)
		if err != nil {
			return nil, err
		}
		resp, err := cc.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if cc.Err() != nil {
			c.drop(key, cc)
		}
		if sends >= h2MaxSends || !h2Unsent(req, err) {
			return nil, err
		}
	}
}

// Errors of net/http's HTTP/2 client for a request it did not send (their
// values are not exported; TestH2UnsentErrors keeps these in step).
const (
	h2ErrUnusable = "http2: client conn not usable"
	h2ErrGoAway   = "http2: Transport received Server's graceful shutdown GOAWAY"
	h2ErrRefused  = "REFUSED_STREAM"
)

// h2Unsent reports whether err says req was not sent and req may be sent
// again: on a connection no longer usable nothing of it was read; after a
// GOAWAY or a refused stream only a bodiless request is known to be whole.
func h2Unsent(req *http.Request, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	msg := err.Error()
	if msg == h2ErrUnusable {
		return true
	}
	bodiless := req.Body == nil || req.Body == http.NoBody
	return bodiless && (msg == h2ErrGoAway || strings.Contains(msg, h2ErrRefused))
}

// get reserves a slot for one request on a connection of pool key, dialing
// one if none has room. Spent connections it finds leave the pool and are
// closed after c.mu is released: closing one that is still open writes to
// its socket (batchConn's flush, TLS's close_notify), which may wait.
func (c *h2Client) get(ctx context.Context, key string) (*http.ClientConn, error) {
	var spentConns []*http.ClientConn
	defer func() { closeAll(spentConns) }()
	for {
		c.mu.Lock()
		p := c.pools[key]
		if p == nil {
			p = &h2Pool{}
			c.pools[key] = p
		}
		for i := 0; i < len(p.conns); {
			cc := p.conns[i]
			if cc.Reserve() == nil {
				c.mu.Unlock()
				return cc, nil
			}
			if spent(cc) {
				p.conns = slices.Delete(p.conns, i, i+1)
				spentConns = append(spentConns, cc)
				continue
			}
			i++
		}
		if d := p.dialing; d != nil {
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// The requests that waited fail with the dial (a connect
			// error each after the other would add up), unless it ended
			// only because the request that made it went away.
			if d.err != nil && !errors.Is(d.err, context.Canceled) && !errors.Is(d.err, context.DeadlineExceeded) {
				return nil, d.err
			}
			continue
		}
		d := &h2Dial{done: make(chan struct{})}
		p.dialing = d
		c.mu.Unlock()

		cc, err := c.t.NewClientConn(ctx, "http", key)

		c.mu.Lock()
		p.dialing = nil
		d.err = err
		close(d.done)
		if err != nil {
			if len(p.conns) == 0 && c.pools[key] == p {
				delete(c.pools, key)
			}
			c.mu.Unlock()
			return nil, err
		}
		spentConns = c.sweepLocked(spentConns)
		if c.pools[key] != p { // swept: nothing but this dial was in it
			c.pools[key] = p
		}
		p.conns = append(p.conns, cc)
		c.mu.Unlock()
	}
}

func closeAll(conns []*http.ClientConn) {
	for _, cc := range conns {
		cc.Close()
	}
}

// sweepLocked takes the spent connections out of every pool, and empty
// pools (endpoints gone), when a connection is made: a pool no request
// uses any more is not looked at otherwise. It returns them appended to
// spentConns, for the caller to close once c.mu is released. The
// connections keep no state hook, which net/http would call twice per
// request. c.mu is held.
func (c *h2Client) sweepLocked(spentConns []*http.ClientConn) []*http.ClientConn {
	for key, p := range c.pools {
		live := p.conns[:0]
		for _, cc := range p.conns {
			if !spent(cc) {
				live = append(live, cc)
			} else {
				spentConns = append(spentConns, cc)
			}
		}
		clear(p.conns[len(live):])
		p.conns = live
		if len(p.conns) == 0 && p.dialing == nil {
			delete(c.pools, key)
		}
	}
	return spentConns
}

// spent reports whether cc will take no more requests: closed, or idle
// and refusing any. The latter is a connection whose GOAWAY came after
// its last stream ended and which the server has not closed yet: net/http
// closes it only when a stream ends after the GOAWAY (or a server that
// sets SETTINGS_MAX_CONCURRENT_STREAMS to 0 while it is idle, rare: the
// pool then dials another). c.mu is held, so no request reserves a slot
// between the two looks.
func spent(cc *http.ClientConn) bool {
	return cc.Err() != nil || (cc.InFlight() == 0 && cc.Available() == 0)
}

// drop takes a closed connection out of its pool, and the pool out of the
// client when it is empty and not dialing.
func (c *h2Client) drop(key string, cc *http.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[key]
	if p == nil {
		return
	}
	if i := slices.Index(p.conns, cc); i >= 0 {
		p.conns = slices.Delete(p.conns, i, i+1)
	}
	if len(p.conns) == 0 && p.dialing == nil {
		delete(c.pools, key)
	}
}

// CloseIdleConnections closes the connections with no request in flight.
func (c *h2Client) CloseIdleConnections() {
	c.mu.Lock()
	var idle []*http.ClientConn
	for _, p := range c.pools {
		for _, cc := range p.conns {
			if cc.InFlight() == 0 {
				idle = append(idle, cc)
			}
		}
	}
	c.mu.Unlock()
	closeAll(idle)
	c.mu.Lock()
	spentConns := c.sweepLocked(nil)
	c.mu.Unlock()
	closeAll(spentConns)
}
