// Package manifest reads and writes streams of Kubernetes YAML documents
// as yaml.v3 node trees, so that editing one (JSON-patch operations, or
// removals) keeps every other field, its order and its scalar style.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/internal/jsonpatch"
)

// Document is one YAML document of a stream.
type Document struct {
	Node *yaml.Node // the document's root mapping
}

// Read splits a stream into documents; empty documents are dropped.
func Read(r io.Reader) ([]*Document, error) {
	dec := yaml.NewDecoder(r)
	var docs []*Document
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("YAML document %d: %w", i, err)
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue
		}
		root := n.Content[0]
		if root.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("YAML document %d is not a mapping (a Kubernetes resource)", i)
		}
		docs = append(docs, &Document{Node: root})
	}
}

// Write writes documents separated by "---".
func Write(w io.Writer, docs []*Document) error {
	for i, d := range docs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d.Node); err != nil {
			return err
		}
		enc.Close()
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// JSON returns the document as JSON (for decoding into API types).
func (d *Document) JSON() ([]byte, error) {
	var v any
	if err := d.Node.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(normalise(v))
}

// normalise turns yaml.v3's map[string]any trees into JSON-encodable ones.
func normalise(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalise(x)
		}
	case []any:
		for i, x := range t {
			t[i] = normalise(x)
		}
	}
	return v
}

// Get returns the node at a JSON pointer ("" is the document), or nil.
func (d *Document) Get(pointer string) *yaml.Node {
	n := d.Node
	for _, tok := range tokens(pointer) {
		n = child(n, tok)
		if n == nil {
			return nil
		}
	}
	return n
}

// String returns the scalar at pointer, or "".
func (d *Document) String(pointer string) string {
	if n := d.Get(pointer); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// Apply applies operations in order. add on an existing map key replaces
// it; add at index i inserts; "-" appends.
func (d *Document) Apply(ops []jsonpatch.Op) error {
	for _, op := range ops {
		if err := d.apply(op); err != nil {
			return fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	return nil
}

func (d *Document) apply(op jsonpatch.Op) error {
	toks := tokens(op.Path)
	if len(toks) == 0 {
		return errors.New("cannot patch the document root")
	}
	// The containers on the way are written in block style once edited: a
	// flow-style parent would force what is added onto one line.
	parent := d.Node
	parent.Style &^= yaml.FlowStyle
	for _, tok := range toks[:len(toks)-1] {
		parent = child(parent, tok)
		if parent == nil {
			return errors.New("parent does not exist")
		}
		parent.Style &^= yaml.FlowStyle
	}
	last := toks[len(toks)-1]
	var value *yaml.Node
	if op.Op != "remove" {
		var err error
		if value, err = toNode(op.Value); err != nil {
			return err
		}
	}
	switch parent.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == last {
				if op.Op == "remove" {
					parent.Content = append(parent.Content[:i], parent.Content[i+2:]...)
				} else {
					parent.Content[i+1] = value
				}
				return nil
			}
		}
		if op.Op != "add" {
			return errors.New("no such key")
		}
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: last}, value)
		return nil
	case yaml.SequenceNode:
		if last == "-" && op.Op == "add" {
			parent.Content = append(parent.Content, value)
			return nil
		}
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i > len(parent.Content) || (op.Op != "add" && i == len(parent.Content)) {
			return fmt.Errorf("index %q out of range", last)
		}
		switch op.Op {
		case "add":
			parent.Content = append(parent.Content[:i], append([]*yaml.Node{value}, parent.Content[i:]...)...)
		case "replace":
			parent.Content[i] = value
		case "remove":
			parent.Content = append(parent.Content[:i], parent.Content[i+1:]...)
		}
		return nil
	}
	return errors.New("parent is a scalar")
}

// toNode turns a Go value into a node through JSON (so that API types keep
// their field names and omitempty).
func toNode(v any) (*yaml.Node, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	clearStyle(n.Content[0])
	return n.Content[0], nil
}

// clearStyle drops the flow style JSON input gives, so that new values are
// written in block style like the rest of the document; strings keep quotes
// only where YAML needs them.
func clearStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		clearStyle(c)
	}
}

func child(n *yaml.Node, tok string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == tok {
				return n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

func tokens(pointer string) []string {
	if pointer == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts
}
