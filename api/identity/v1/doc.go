// Package identityv1 is version 1 of Weft's identity API (generated from
// identity.proto): the Certify RPC by which proxies obtain certificates.
package identityv1
