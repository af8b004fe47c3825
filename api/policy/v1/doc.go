// Package policyv1 is version 1 of Weft's policy API (generated from
// outbound.proto): the routing tables of Service ports streamed to
// proxies.
package policyv1
