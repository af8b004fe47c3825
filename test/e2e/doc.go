// Package e2e holds the end-to-end tests that run against the single-node
// test cluster (make cluster-up, then make e2e; build tag e2e).
package e2e
