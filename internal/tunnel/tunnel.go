// Package tunnel is Weft's opaque transport, version 1: how a client proxy
// carries an opaque TCP connection (Postgres, Redis, MySQL, …) to a meshed
// endpoint over mTLS. The client opens mTLS to the endpoint proxy's inbound
// port (4143) offering ALPN protocol ALPN, then sends a Header naming the
// port the connection was for, then the connection's bytes. The server's
// proxy terminates mTLS, reads the header, connects to that port of its
// application and copies bytes both ways.
//
// The header on the wire, after the TLS handshake (all integers big-endian):
//
//	offset  size  field
//	0       2     magic "WT"
//	2       1     version (1)
//	3       1     flags (0; other values are refused)
//	4       2     target port (1-65535)
//	6       2     name length n (0-MaxName)
//	8       n     name: the logical destination the client dialed, for
//	              logs and metrics (UTF-8, may be empty)
//
// A reader refuses any other magic, version or flags, a port of 0 and a
// name longer than MaxName, so a stray or hostile peer cannot make the
// server allocate or connect anywhere it would not.
package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the version of the header this package reads and writes.
const Version = 1

// ALPN is the TLS application protocol a client offers (and the server
// accepts) to say the mTLS stream starts with a Header.
const ALPN = "weft.tunnel/1"

// MaxName bounds the header's name.
const MaxName = 1024

const fixedLen = 8

var magic = [2]byte{'W', 'T'}

// Header is what the client tells the server before the connection's bytes.
type Header struct {
	Port uint16 // the application port the connection is for
	Name string // the logical destination (e.g. "db.shop.svc.cluster.local:5432"); optional
}

// Errors returned by Read for a malformed header.
var (
	ErrMagic   = errors.New("tunnel: not a Weft opaque transport header")
	ErrVersion = errors.New("tunnel: unsupported header version")
	ErrHeader  = errors.New("tunnel: invalid header")
)

// Append appends h's encoding to b.
func (h Header) Append(b []byte) ([]byte, error) {
	if h.Port == 0 {
		return b, fmt.Errorf("%w: port 0", ErrHeader)
	}
	if len(h.Name) > MaxName {
		return b, fmt.Errorf("%w: name of %d bytes (at most %d)", ErrHeader, len(h.Name), MaxName)
	}
	b = append(b, magic[0], magic[1], Version, 0)
	b = binary.BigEndian.AppendUint16(b, h.Port)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Name)))
	return append(b, h.Name...), nil
}

// Write sends h in one write.
func Write(w io.Writer, h Header) error {
	b, err := h.Append(make([]byte, 0, fixedLen+len(h.Name)))
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("tunnel: writing header: %w", err)
	}
	return nil
}

// Read reads one header from r, consuming exactly its bytes.
func Read(r io.Reader) (Header, error) {
	var fixed [fixedLen]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Header{}, fmt.Errorf("tunnel: reading header: %w", err)
	}
	if fixed[0] != magic[0] || fixed[1] != magic[1] {
		return Header{}, ErrMagic
	}
	if fixed[2] != Version {
		return Header{}, fmt.Errorf("%w %d (this proxy speaks %d)", ErrVersion, fixed[2], Version)
	}
	if fixed[3] != 0 {
		return Header{}, fmt.Errorf("%w: unknown flags %#x", ErrHeader, fixed[3])
	}
	h := Header{Port: binary.BigEndian.Uint16(fixed[4:6])}
	if h.Port == 0 {
		return Header{}, fmt.Errorf("%w: port 0", ErrHeader)
	}
	n := int(binary.BigEndian.Uint16(fixed[6:8]))
	if n > MaxName {
		return Header{}, fmt.Errorf("%w: name of %d bytes (at most %d)", ErrHeader, n, MaxName)
	}
	if n > 0 {
		name := make([]byte, n)
		if _, err := io.ReadFull(r, name); err != nil {
			return Header{}, fmt.Errorf("tunnel: reading header name: %w", err)
		}
		h.Name = string(name)
	}
	return h, nil
}
