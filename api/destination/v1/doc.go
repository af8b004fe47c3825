// Package destinationv1 is version 1 of Weft's destination API (generated
// from destination.proto): endpoint and profile streams served to proxies.
package destinationv1
