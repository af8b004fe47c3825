package h2client

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// body is a response body: the DATA the read loop received, read by the
// caller. Its fields are under its stream's mu. Data is kept in chunks
// from pools of three sizes, returned as they are read: a small response
// holds a small chunk.
type body struct {
	st       *stream
	chunks   []*[]byte  // received, not yet read: chunks[0][off:], then the others
	arr      [4]*[]byte // chunks' first array
	off      int
	buffered int
	err      error       // io.EOF at the end, or why the stream ended
	closed   bool        // the caller closed it
	trailer  http.Header // received, copied into the response's Trailer at EOF
}

// chunkSizes are the sizes of the chunks' pools; a DATA frame's payload is
// at most the largest (the client does not raise SETTINGS_MAX_FRAME_SIZE).
var chunkSizes = [...]int{1 << 10, 4 << 10, 16 << 10}

var chunkPools [len(chunkSizes)]sync.Pool

// newChunk is an empty chunk that holds n bytes, or the largest.
func newChunk(n int) *[]byte {
	i := 0
	for i < len(chunkSizes)-1 && chunkSizes[i] < n {
		i++
	}
	if c, ok := chunkPools[i].Get().(*[]byte); ok {
		return c
	}
	c := make([]byte, 0, chunkSizes[i])
	return &c
}

func putChunk(c *[]byte) {
	for i, size := range chunkSizes {
		if cap(*c) == size {
			*c = (*c)[:0]
			chunkPools[i].Put(c)
			return
		}
	}
}

// add appends data; false when the body is closed or has ended (the
// caller returns its credit).
func (b *body) add(data []byte) bool {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if b.closed || b.err != nil {
		return false
	}
	b.buffered += len(data)
	for len(data) > 0 {
		var c *[]byte
		if n := len(b.chunks); n > 0 && len(*b.chunks[n-1]) < cap(*b.chunks[n-1]) {
			c = b.chunks[n-1]
		} else {
			c = newChunk(len(data))
			if b.chunks == nil {
				b.chunks = b.arr[:0]
			}
			b.chunks = append(b.chunks, c)
		}
		k := min(len(data), cap(*c)-len(*c))
		*c = append(*c, data[:k]...)
		data = data[k:]
	}
	st.cond.Broadcast()
	return true
}

// endBodyLocked ends the body with err (io.EOF: complete) unless it has
// ended; st.mu is held.
func (st *stream) endBodyLocked(err error) {
	if st.body.err == nil {
		st.body.err = err
	}
	st.cond.Broadcast()
}

// Read reads the response body; the last data comes with io.EOF, after
// the trailers were copied into the response's Trailer.
func (b *body) Read(p []byte) (int, error) {
	st := b.st
	st.mu.Lock()
	for b.buffered == 0 && b.err == nil && !b.closed {
		st.cond.Wait()
	}
	if b.closed {
		st.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	n := 0
	for n < len(p) && len(b.chunks) > 0 {
		c := b.chunks[0]
		k := copy(p[n:], (*c)[b.off:])
		n += k
		b.off += k
		if b.off == len(*c) {
			putChunk(c)
			b.chunks[0] = nil
			b.chunks = b.chunks[1:]
			b.off = 0
		}
	}
	b.buffered -= n
	var err error
	if b.buffered == 0 {
		clear(b.arr[:])
		b.chunks = b.arr[:0]
		if err = b.err; err == io.EOF && b.trailer != nil {
			if st.resp.Trailer == nil {
				st.resp.Trailer = make(http.Header, len(b.trailer))
			}
			for k, vv := range b.trailer {
				st.resp.Trailer[k] = vv
			}
			b.trailer = nil
		}
	}
	st.mu.Unlock()
	if n > 0 {
		st.cc.credit(st, int64(n))
	}
	return n, err
}

// errBodyClosed resets a stream whose response body was closed before
// the stream ended.
var errBodyClosed = errors.New("h2client: response body closed")

// Close stops reading: what is buffered is dropped and its credit
// returned, and a stream not done is reset (CANCEL), which stops its
// request body too.
func (b *body) Close() error {
	st := b.st
	st.mu.Lock()
	if b.closed {
		st.mu.Unlock()
		return nil
	}
	b.closed = true
	n := b.buffered
	for _, c := range b.chunks {
		putChunk(c)
	}
	b.chunks, b.off, b.buffered = nil, 0, 0
	st.cond.Broadcast()
	st.mu.Unlock()
	cc := st.cc
	if n > 0 {
		cc.credit(nil, int64(n))
	}
	cc.mu.Lock()
	open := cc.streams[st.id] == st
	cc.mu.Unlock()
	if open {
		cc.resetStream(st, http2.ErrCodeCancel, errBodyClosed)
	}
	return nil
}
