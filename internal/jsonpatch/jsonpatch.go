// Package jsonpatch is the one JSON patch (RFC 6902) operation type of the
// tree: injection and uninjection (package inject) produce patches, the
// admission webhook sends them to the API server, and the CLI applies them
// to YAML documents (package manifest).
package jsonpatch

import "strings"

// Op is one operation: add, replace or remove.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Add returns an add operation.
func Add(path string, value any) Op { return Op{Op: "add", Path: path, Value: value} }

// Remove returns a remove operation.
func Remove(path string) Op { return Op{Op: "remove", Path: path} }

// Escape escapes a key for use as a JSON pointer token ("~" → "~0",
// "/" → "~1").
func Escape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}
