// Package dstscale measures the destination service at scale (see
// scale_test.go): a real kube-apiserver with many Services, EndpointSlices
// and Pods, weft-controller destination as a process, many watch streams.
//
//	go test ./bench/dstscale -v                      # small scale (make test: correctness)
//	WEFT_DST_SCALE=full go test ./bench/dstscale -v  # 500 Services, 10,000 endpoints, 1,000 streams
package dstscale
