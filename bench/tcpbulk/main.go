// Command tcpbulk is the benchmark's opaque-TCP load: a server that sends
// as many bytes as asked ("bulk N\n") or answers "ok\n" to "echo\n" and
// closes, and two clients, each printing one JSON line. -bulk moves -bytes
// over -c connections and fails unless every byte arrived; -connect opens
// new connections for -d (at most -max), one echo each, and counts them.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	serveAddr := flag.String("serve", "", "listen address of the server")
	bulk := flag.String("bulk", "", "server address: bulk transfer")
	connect := flag.String("connect", "", "server address: new connections, one echo each")
	total := flag.Int64("bytes", 1<<30, "bytes to move in all (-bulk)")
	conns := flag.Int("c", 4, "connections (-bulk) or workers (-connect)")
	dur := flag.Duration("d", 5*time.Second, "how long to open connections (-connect)")
	maxConns := flag.Int64("max", 1_000_000, "at most this many connections (-connect)")
	flag.Parse()
	var out any
	var err error
	switch {
	case *serveAddr != "":
		var l net.Listener
		if l, err = net.Listen("tcp", *serveAddr); err == nil {
			err = serve(l)
		}
	case *bulk != "":
		out, err = runBulk(*bulk, *total, *conns)
	case *connect != "":
		out, err = runConnect(*connect, *conns, *dur, *maxConns)
	default:
		err = errors.New("one of -serve, -bulk, -connect")
	}
	if err == nil && out != nil {
		err = json.NewEncoder(os.Stdout).Encode(out)
	}
	if err != nil {
		log.Fatalf("tcpbulk: %v", err)
	}
}

// serve answers every connection accepted on l until l is closed.
func serve(l net.Listener) error {
	zeros := make([]byte, 256<<10)
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Time{})
			switch f := strings.Fields(line); {
			case len(f) == 1 && f[0] == "echo":
				io.WriteString(c, "ok\n")
			case len(f) == 2 && f[0] == "bulk":
				n, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil || n < 0 {
					return
				}
				for n > 0 {
					chunk := zeros
					if int64(len(chunk)) > n {
						chunk = chunk[:n]
					}
					w, err := c.Write(chunk)
					if err != nil {
						return
					}
					n -= int64(w)
				}
			}
		}()
	}
}

// bulkResult is -bulk's output.
type bulkResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	// This process's CPU seconds during the transfer (getrusage).
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
}

// cpuSeconds is this process's user and system CPU time so far.
func cpuSeconds() (user, sys float64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime), tv(ru.Stime)
}

func runBulk(addr string, total int64, conns int) (*bulkResult, error) {
	if conns < 1 {
		return nil, errors.New("-c must be ≥ 1")
	}
	per := total / int64(conns)
	var got atomic.Int64
	errs := make([]error, conns)
	start := time.Now()
	u0, s0 := cpuSeconds()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			if _, err := fmt.Fprintf(c, "bulk %d\n", per); err != nil {
				errs[i] = err
				return
			}
			n, err := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
			got.Add(n)
			if err == nil && n != per {
				err = fmt.Errorf("connection %d: %d of %d bytes", i, n, per)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	u1, s1 := cpuSeconds()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &bulkResult{Bytes: got.Load(), Seconds: secs, UserSeconds: u1 - u0, SysSeconds: s1 - s0}, nil
}

// connectResult is -connect's output.
type connectResult struct {
	Conns   int64   `json:"conns"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"first_error,omitempty"`
}

func runConnect(addr string, workers int, d time.Duration, max int64) (*connectResult, error) {
	var ok, failed, started atomic.Int64
	var first atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 8)
			for time.Now().Before(deadline) && started.Add(1) <= max {
				err := echo(addr, buf)
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	r := connectResult{Conns: ok.Load(), Errors: failed.Load(), Seconds: time.Since(start).Seconds()}
	if s, _ := first.Load().(string); s != "" {
		r.Error = s
	}
	return &r, nil
}

func echo(addr string, buf []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "echo\n"); err != nil {
		return err
	}
	n, err := io.ReadFull(c, buf[:3])
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ok\n" {
		return fmt.Errorf("got %q, want ok", buf[:n])
	}
	return nil
}
