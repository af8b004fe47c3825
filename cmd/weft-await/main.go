// Command weft-await waits for the local Weft proxy to be ready, runs a
// command, and with --shutdown asks the proxy to exit afterwards, so that a
// meshed Job completes:
//
//	weft-await [--shutdown] [--timeout 2m] [--port 4191] -- CMD ARGS...
//
// It exits with the command's status. With no command it only waits (the
// proxy's postStart hook).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/weftmesh/weft/internal/await"
)

func main() {
	fs := flag.NewFlagSet("weft-await", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weft-await [--shutdown] [--timeout D] [--port N] [-- CMD ARGS...]\n\n")
		fs.PrintDefaults()
	}
	shutdown := fs.Bool("shutdown", false, "POST /shutdown to the proxy after the command exits")
	timeout := fs.Duration("timeout", 0, "give up waiting for the proxy after this long (0: wait forever)")
	port := fs.Int("port", 4191, "the proxy's admin port")
	fs.Parse(os.Args[1:])
	if *port < 1 || *port > 65535 {
		log.Fatalf("weft-await: --port %d: want 1-65535", *port)
	}
	o := await.Options{Admin: "127.0.0.1:" + strconv.Itoa(*port), Timeout: *timeout, Shutdown: *shutdown, Command: fs.Args()}
	code, err := await.Run(context.Background(), o)
	if err != nil {
		log.Printf("weft-await: %v", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
