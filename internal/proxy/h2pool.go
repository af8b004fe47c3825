package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"

	"github.com/weftmesh/weft/internal/h2client"
)

// h2Client sends HTTP/2 requests on client connections it keeps per pool
// name (the request's URL host: an address, identityPool's name for an mTLS
// peer, appPoolKey's inbound), each dialed by dial and run by the proxy's
// own HTTP/2 client (internal/h2client), which replaced net/http's: its
// read and write loops were the largest part of each proxy's CPU in the h2
// mTLS pair that was not the proxy's own (issue 17).
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
	dial func(ctx context.Context, addr string) (net.Conn, error)
	cfg  h2client.Config

	mu    sync.Mutex
	pools map[string]*h2Pool
}

type h2Pool struct {
	conns   []*h2client.ClientConn
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

func newH2Client(dial func(ctx context.Context, addr string) (net.Conn, error), cfg h2client.Config) *h2Client {
	return &h2Client{dial: dial, cfg: cfg, pools: map[string]*h2Pool{}}
}

// RoundTrip sends req on a connection of the pool named by req.URL.Host;
// a connection it dials is what the request's context says (withUpstream).
func (c *h2Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var up upstream
	if u := upstreamOf(ctx); u != nil {
		up = u.upstream
	}
	return c.roundTrip(ctx, req, up)
}

// roundTrip is RoundTrip with the request's context and peer given apart,
// as h1Client takes them: ctx, not req.Context(), cancels the request, and
// up says what a new connection must be. The proxy sends its copy of a
// request without another copy to set its context (Request.WithContext).
func (c *h2Client) roundTrip(ctx context.Context, req *http.Request, up upstream) (*http.Response, error) {
	key := req.URL.Host
	for sends := 1; ; sends++ {
		cc, err := c.get(ctx, key, up)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := cc.Send(ctx, req)
		if err == nil {
			return resp, nil
		}
		if cc.Err() != nil {
			c.drop(key, cc)
		}
		if sends >= h2MaxSends || !h2Unsent(req, err) {
			if errors.Is(err, h2client.ErrUnusable) {
				closeBody(req) // the connection left it open for another
			}
			return nil, err
		}
	}
}

// closeBody closes a request's body, as a RoundTripper does when it
// fails.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// h2Unsent reports whether err says req was not sent and req may be sent
// again: on a connection no longer usable nothing of it was read; after a
// GOAWAY or a refused stream only a bodiless request is known to be whole.
func h2Unsent(req *http.Request, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, h2client.ErrUnusable) {
		return true
	}
	bodiless := req.Body == nil || req.Body == http.NoBody
	return bodiless && errors.Is(err, h2client.ErrRefused)
}

// get reserves a slot for one request on a connection of pool key, dialing
// one to up if none has room. Spent connections it finds leave the pool and are
// closed after c.mu is released: closing one that is still open writes to
// its socket (batchConn's flush, TLS's close_notify), which may wait.
func (c *h2Client) get(ctx context.Context, key string, up upstream) (*h2client.ClientConn, error) {
	var spentConns []*h2client.ClientConn
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

		cc, err := c.connect(&upstreamCtx{Context: ctx, upstream: up}, key)

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

// connect dials a connection for pool key and starts HTTP/2 on it.
func (c *h2Client) connect(ctx context.Context, key string) (*h2client.ClientConn, error) {
	nc, err := c.dial(ctx, key)
	if err != nil {
		return nil, err
	}
	return h2client.New(nc, c.cfg)
}

func closeAll(conns []*h2client.ClientConn) {
	for _, cc := range conns {
		cc.Close()
	}
}

// sweepLocked takes the spent connections out of every pool, and empty
// pools (endpoints gone), when a connection is made: a pool no request
// uses any more is not looked at otherwise. It returns them appended to
// spentConns, for the caller to close once c.mu is released. The
// c.mu is held.
func (c *h2Client) sweepLocked(spentConns []*h2client.ClientConn) []*h2client.ClientConn {
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
// and refusing any (a server that sets SETTINGS_MAX_CONCURRENT_STREAMS to
// 0 while it is idle, rare: the pool then dials another). c.mu is held,
// so no request reserves a slot between the two looks.
func spent(cc *h2client.ClientConn) bool {
	return cc.Err() != nil || (cc.InFlight() == 0 && cc.Available() == 0)
}

// drop takes a closed connection out of its pool, and the pool out of the
// client when it is empty and not dialing.
func (c *h2Client) drop(key string, cc *h2client.ClientConn) {
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
	var idle []*h2client.ClientConn
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
