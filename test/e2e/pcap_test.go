//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
)

// A small reader for the pcap files tcpdump writes (libpcap format: a
// 24-byte global header, then a 16-byte header before each captured frame),
// enough to find a string in the frames and to put TCP streams back
// together. IPv4 over Ethernet (a bridge), Linux cooked v1/v2 (-i any).

type packet struct {
	frame    []byte // the whole captured frame
	tcp      bool   // an IPv4 TCP segment; the fields below are set
	src, dst netip.AddrPort
	seq      uint32
	syn, ack bool
	payload  []byte
}

func readPcap(path string) ([]packet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: %d bytes, shorter than a pcap header", path, len(b))
	}
	var order binary.ByteOrder
	switch m := binary.LittleEndian.Uint32(b); m {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%s: not a pcap file (magic %#x)", path, m)
	}
	link := order.Uint32(b[20:])
	var pkts []packet
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			return pkts, fmt.Errorf("%s: truncated record header at byte %d", path, off)
		}
		n := int(order.Uint32(b[off+8:]))
		off += 16
		if off+n > len(b) {
			return pkts, fmt.Errorf("%s: truncated record at byte %d", path, off)
		}
		frame := b[off : off+n]
		off += n
		p := packet{frame: frame}
		if ip, ok := ipv4Of(link, frame); ok {
			p.decodeTCP(ip)
		}
		pkts = append(pkts, p)
	}
	return pkts, nil
}

// ipv4Of returns the IPv4 packet a frame carries.
func ipv4Of(link uint32, f []byte) ([]byte, bool) {
	var etherType uint16
	switch link {
	case 1: // Ethernet
		if len(f) < 14 {
			return nil, false
		}
		etherType, f = binary.BigEndian.Uint16(f[12:]), f[14:]
		if etherType == 0x8100 && len(f) >= 4 { // one VLAN tag
			etherType, f = binary.BigEndian.Uint16(f[2:]), f[4:]
		}
	case 113: // Linux cooked v1
		if len(f) < 16 {
			return nil, false
		}
		etherType, f = binary.BigEndian.Uint16(f[14:]), f[16:]
	case 276: // Linux cooked v2
		if len(f) < 20 {
			return nil, false
		}
		etherType, f = binary.BigEndian.Uint16(f[0:]), f[20:]
	default:
		return nil, false
	}
	return f, etherType == 0x0800
}

func (p *packet) decodeTCP(ip []byte) {
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total == 0 || total > len(ip) { // TSO frames may say 0; snaplen may cut
		total = len(ip)
	}
	if ihl < 20 || total < ihl+20 {
		return
	}
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	tcp := ip[ihl:total]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return
	}
	p.tcp = true
	p.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:]))
	p.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
	p.seq = binary.BigEndian.Uint32(tcp[4:])
	p.syn, p.ack = tcp[13]&0x02 != 0, tcp[13]&0x10 != 0
	p.payload = tcp[doff:]
}

// flowsContaining counts, per "src -> dst" TCP flow, the packets whose frame
// contains s anywhere (headers included, so nothing escapes a search).
// Non-TCP frames count under "other". It also returns the total.
func flowsContaining(pkts []packet, s string) (map[string]int, int) {
	flows, total := map[string]int{}, 0
	for _, p := range pkts {
		if !bytes.Contains(p.frame, []byte(s)) {
			continue
		}
		total++
		if p.tcp {
			flows[p.src.String()+" -> "+p.dst.String()]++
		} else {
			flows["other"]++
		}
	}
	return flows, total
}

// tcpConn is one TCP connection between a client and a server address,
// its two byte streams put back in sequence order.
type tcpConn struct {
	client, server netip.AddrPort
	fromSYN        bool // the capture saw the connection open
	up, down       []byte
	gaps           int // holes in either stream (segments not captured)
}

// connsBetween reassembles the TCP connections whose client side is on
// clientIP and server side on serverIP.
func connsBetween(pkts []packet, clientIP, serverIP netip.Addr) []*tcpConn {
	type half struct {
		base   uint32
		segs   map[uint32][]byte
		seeded bool
	}
	type conn struct {
		c        *tcpConn
		up, down half
	}
	conns := map[[2]netip.AddrPort]*conn{}
	var order [][2]netip.AddrPort
	for _, p := range pkts {
		if !p.tcp {
			continue
		}
		var key [2]netip.AddrPort
		var h func(*conn) *half
		switch {
		case p.src.Addr() == clientIP && p.dst.Addr() == serverIP:
			key, h = [2]netip.AddrPort{p.src, p.dst}, func(c *conn) *half { return &c.up }
		case p.src.Addr() == serverIP && p.dst.Addr() == clientIP:
			key, h = [2]netip.AddrPort{p.dst, p.src}, func(c *conn) *half { return &c.down }
		default:
			continue
		}
		c := conns[key]
		if c == nil {
			c = &conn{c: &tcpConn{client: key[0], server: key[1]}}
			conns[key] = c
			order = append(order, key)
		}
		hf := h(c)
		if hf.segs == nil {
			hf.segs = map[uint32][]byte{}
		}
		if p.syn {
			hf.base, hf.seeded = p.seq+1, true
			if !p.ack {
				c.c.fromSYN = true
			}
			continue
		}
		if len(p.payload) == 0 {
			continue
		}
		if !hf.seeded {
			hf.base, hf.seeded = p.seq, true
		}
		if old, ok := hf.segs[p.seq]; !ok || len(p.payload) > len(old) { // retransmissions
			hf.segs[p.seq] = p.payload
		}
	}
	join := func(hf *half, gaps *int) []byte {
		type seg struct {
			off  uint32
			data []byte
		}
		var segs []seg
		for seq, d := range hf.segs {
			segs = append(segs, seg{seq - hf.base, d})
		}
		sort.Slice(segs, func(i, j int) bool { return segs[i].off < segs[j].off })
		var out []byte
		for _, s := range segs {
			next := uint32(len(out))
			switch {
			case s.off > next:
				*gaps++
				return out // stop at a hole: what follows cannot be parsed
			case s.off+uint32(len(s.data)) > next:
				out = append(out, s.data[next-s.off:]...)
			}
		}
		return out
	}
	var out []*tcpConn
	for _, k := range order {
		c := conns[k]
		c.c.up, c.c.down = join(&c.up, &c.c.gaps), join(&c.down, &c.c.gaps)
		out = append(out, c.c)
	}
	return out
}

// tlsRecords walks a byte stream as a sequence of TLS records (5-byte
// header: content type 20-23, version 3.1-3.4, length at most 2^14+2048).
// It returns the number of records of each type and, if the stream is not
// TLS from its first byte to its last, where and why.
func tlsRecords(s []byte) (map[byte]int, error) {
	count := map[byte]int{}
	for off := 0; off < len(s); {
		if len(s)-off < 5 {
			return count, fmt.Errorf("%d stray bytes after the last record at offset %d: %q", len(s)-off, off, clip(s[off:]))
		}
		typ, major, minor := s[off], s[off+1], s[off+2]
		n := int(binary.BigEndian.Uint16(s[off+3:]))
		if typ < 20 || typ > 23 || major != 3 || minor < 1 || minor > 4 || n > 1<<14+2048 {
			return count, fmt.Errorf("no TLS record header at offset %d: %q", off, clip(s[off:]))
		}
		if off+5+n > len(s) {
			return count, fmt.Errorf("record at offset %d (type %d, %d bytes) cut after %d bytes", off, typ, n, len(s)-off-5)
		}
		count[typ]++
		off += 5 + n
	}
	return count, nil
}

func clip(b []byte) string {
	if len(b) > 48 {
		return string(b[:48]) + "..."
	}
	return string(b)
}

func describeFlows(flows map[string]int) string {
	var parts []string
	for f, n := range flows {
		parts = append(parts, fmt.Sprintf("%s (%d)", f, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
