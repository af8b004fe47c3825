package main

import (
	"net"
	"testing"
	"time"
)

func TestBulkAndConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serve(l)
	addr := l.Addr().String()

	b, err := runBulk(addr, 3<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	if b.Bytes != 3<<20 || b.Seconds <= 0 {
		t.Errorf("bulk = %+v, want %d bytes in > 0 s", *b, 3<<20)
	}

	c, err := runConnect(addr, 2, 5*time.Second, 25)
	if err != nil {
		t.Fatal(err)
	}
	if c.Conns != 25 || c.Errors != 0 {
		t.Errorf("connect = %+v, want 25 connections (the -max) and no errors", *c)
	}

	// A server that closes early: bulk must say bytes are missing.
	short, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	go func() {
		for {
			c, err := short.Accept()
			if err != nil {
				return
			}
			c.Write(make([]byte, 10))
			c.Close()
		}
	}()
	if _, err := runBulk(short.Addr().String(), 1<<20, 1); err == nil {
		t.Error("bulk from a server that sent 10 of 1 MiB bytes: no error")
	}
	c, err = runConnect(short.Addr().String(), 1, 2*time.Second, 3)
	if err != nil {
		t.Fatal(err)
	}
	if c.Errors != 3 || c.Conns != 0 || c.Error == "" {
		t.Errorf("connect to a server answering garbage = %+v, want 3 errors", *c)
	}
}
