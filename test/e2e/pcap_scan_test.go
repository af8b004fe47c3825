//go:build e2e

package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWireScanner checks the capture reader, the TLS walk and the SNI check
// on a pcap written here (no cluster needed): a TLS connection whose
// ClientHello is split over two segments, one of them retransmitted, and a
// plaintext one.
func TestWireScanner(t *testing.T) {
	client, server := netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("198.18.0.6")
	tlsC, tlsS := netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(server, 4143)
	plainC, plainS := netip.AddrPortFrom(client, 40001), netip.AddrPortFrom(server, 5432)
	const id = "server.ns.serviceaccount.identity.linkerd.cluster.local"
	hello := clientHello(t, id)
	data := append([]byte{23, 3, 3, 0, 4}, 0xde, 0xad, 0xbe, 0xef)
	frames := [][]byte{
		tcpFrame(tlsC, tlsS, 1000, 0x02, nil),
		tcpFrame(tlsS, tlsC, 5000, 0x12, nil),
		tcpFrame(tlsC, tlsS, 1001, 0x18, hello[:7]),
		tcpFrame(tlsC, tlsS, 1001, 0x18, hello[:7]), // retransmitted
		tcpFrame(tlsC, tlsS, 1008, 0x18, hello[7:]),
		tcpFrame(tlsC, tlsS, 1001+uint32(len(hello)), 0x18, data),
		tcpFrame(tlsS, tlsC, 5001, 0x18, data),
		tcpFrame(plainC, plainS, 2000, 0x02, nil),
		tcpFrame(plainC, plainS, 2001, 0x18, []byte("wire-marker-0123")),
		tcpFrame(plainS, plainC, 7001, 0x18, []byte("echo:wire-marker-0123\n")),
	}
	path := filepath.Join(t.TempDir(), "x.pcap")
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr, 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 262144)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	file := hdr
	for _, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		file = append(append(file, rec...), f...)
	}
	os.WriteFile(path, file, 0o600)

	pkts, err := readPcap(path)
	if err != nil || len(pkts) != len(frames) {
		t.Fatalf("readPcap: %d packets, %v", len(pkts), err)
	}
	flows, n := flowsContaining(pkts, "wire-marker-0123")
	if n != 2 || flows["198.18.0.5:40001 -> 198.18.0.6:5432"] != 1 || flows["198.18.0.6:5432 -> 198.18.0.5:40001"] != 1 {
		t.Errorf("marker found in %d packets: %v", n, flows)
	}
	conns := connsBetween(pkts, client, server)
	if len(conns) != 2 || string(conns[0].up) != string(append(hello, data...)) || !conns[0].fromSYN {
		t.Fatalf("reassembled: %+v", conns)
	}
	if recs, err := tlsRecords(conns[0].up); err != nil || recs[22] != 1 || recs[23] != 1 {
		t.Errorf("TLS walk of the TLS stream: %v %v", recs, err)
	}
	summary, problems := wireTLS(pkts, client, server, id)
	if len(problems) != 2 || !strings.Contains(problems[0], "198.18.0.5:40001 -> 198.18.0.6:5432: the client's 16 bytes are not all TLS") {
		t.Errorf("wireTLS: %s\n%q", summary, problems)
	}
	if summary, problems := wireTLS(pkts[:7], client, server, id); len(problems) != 0 || !strings.Contains(summary, `SNI "`+id+`"`) {
		t.Errorf("wireTLS on the TLS connection alone: %s %q", summary, problems)
	}
	if _, problems := wireTLS(pkts[:7], client, server, "other."+id); len(problems) != 1 || !strings.Contains(problems[0], "not a ClientHello naming other.") {
		t.Errorf("wireTLS with another identity expected: %q", problems)
	}
}

// clientHello is the first record crypto/tls sends to sni.
func clientHello(t *testing.T, sni string) []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: sni}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := b.Read(buf)
	if err != nil || n < 5 || buf[0] != 22 {
		t.Fatalf("ClientHello: %d bytes, %v", n, err)
	}
	return buf[:n]
}

// tcpFrame is an Ethernet/IPv4/TCP frame.
func tcpFrame(src, dst netip.AddrPort, seq uint32, flags byte, payload []byte) []byte {
	f := make([]byte, 14+20+20, 54+len(payload))
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[9] = 0x45, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, flags
	return append(f, payload...)
}
