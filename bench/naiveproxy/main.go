// Command naiveproxy is the benchmark's baseline: Go's
// httputil.ReverseProxy with its defaults, except more idle connections per
// host (so it is not crippled by reconnecting under 16 connections).
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "listen address")
	target := flag.String("target", "http://127.0.0.1:8080", "backend URL")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatalf("naiveproxy: target: %v", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	rp.Transport = t
	log.Fatal(http.ListenAndServe(*listen, rp))
}
