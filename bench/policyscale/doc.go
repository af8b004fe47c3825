// Package policyscale measures the policy controller's outbound side at
// scale (see scale_test.go): a real kube-apiserver with many Services and
// HTTPRoutes, the outbound index and OutboundPolicies server on loopback,
// many watch streams, and the time from a route's update at the API server
// to the first stream (and to every stream) carrying the new table.
//
//	go test ./bench/policyscale -v                         # small scale (make test: correctness)
//	WEFT_POLICY_SCALE=full go test ./bench/policyscale -v  # 500 routes, 1,000 streams
package policyscale
