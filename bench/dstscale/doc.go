// Package dstscale measures the destination service at scale (see
// scale_test.go): a real kube-apiserver with many Services, EndpointSlices
// and Pods, weft-controller destination as a process, many watch streams.
package dstscale
