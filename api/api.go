// Package api holds Weft's own gRPC API between proxies and the control
// plane: protocol buffers under identity/, destination/, policy/ and tap/, each versioned
// in its path, with the generated Go code committed beside them.
// Regenerate with `go generate ./api` (needs protoc from Debian's
// protobuf-compiler; the Go plugins are pinned by go.mod's tool directive).
package api

// Version is the version of every service in this tree.
const Version = "v1"

//go:generate protoc -I . --plugin=protoc-gen-go=../bin/tools/protoc-gen-go --plugin=protoc-gen-go-grpc=../bin/tools/protoc-gen-go-grpc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative identity/v1/identity.proto destination/v1/destination.proto policy/v1/outbound.proto policy/v1/inbound.proto tap/v1/tap.proto
