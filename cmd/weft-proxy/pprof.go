//go:build weftpprof

package main

import (
	"log"
	"net/http"
	"net/http/pprof"
	"os"
)

// Built only with -tags weftpprof (the benchmark's profiling mode): serves
// net/http/pprof on $WEFT_PPROF_ADDR. Release binaries do not contain it.
func init() {
	addr := os.Getenv("WEFT_PPROF_ADDR")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { log.Print(http.ListenAndServe(addr, mux)) }()
}
