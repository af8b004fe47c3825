package manifest

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/jsonpatch"
)

func TestApplyKeepsTheRest(t *testing.T) {
	in := `# a comment that stays
kind: Pod
metadata: {name: p, labels: {b: "2", a: "1"}}
spec:
  containers:
  - {name: app, image: app}
  - name: second
    image: "second:1"
`
	docs, err := Read(strings.NewReader(in))
	if err != nil || len(docs) != 1 {
		t.Fatalf("Read: %v, %d docs", err, len(docs))
	}
	d := docs[0]
	err = d.Apply([]jsonpatch.Op{
		{Op: "add", Path: "/metadata/annotations", Value: map[string]string{"x/y": "z"}},
		{Op: "add", Path: "/metadata/labels/c", Value: "3"},
		{Op: "replace", Path: "/metadata/labels/a", Value: "one"},
		{Op: "add", Path: "/spec/containers/0", Value: map[string]any{"name": "proxy"}},
		{Op: "add", Path: "/spec/containers/-", Value: map[string]any{"name": "last"}},
		{Op: "remove", Path: "/spec/containers/2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Write(&b, docs); err != nil {
		t.Fatal(err)
	}
	want := `# a comment that stays
kind: Pod
metadata:
  name: p
  labels:
    b: "2"
    a: one
    c: "3"
  annotations:
    x/y: z
spec:
  containers:
    - name: proxy
    - {name: app, image: app}
    - name: last
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestApplyErrors(t *testing.T) {
	docs, _ := Read(strings.NewReader("kind: Pod\nspec: {containers: []}\nname: x\n"))
	d := docs[0]
	for _, op := range []jsonpatch.Op{
		{Op: "add", Path: "/missing/child", Value: 1},
		{Op: "replace", Path: "/spec/nokey", Value: 1},
		{Op: "add", Path: "/spec/containers/5", Value: 1},
		{Op: "add", Path: "/name/sub", Value: 1},
		{Op: "add", Path: "", Value: 1},
	} {
		if err := d.Apply([]jsonpatch.Op{op}); err == nil {
			t.Errorf("%+v: no error", op)
		}
	}
	if _, err := Read(strings.NewReader("- a\n")); err == nil {
		t.Error("a sequence document was accepted")
	}
}

func TestJSON(t *testing.T) {
	docs, _ := Read(strings.NewReader("---\nkind: A\nn: 1\n---\n---\nkind: B\n"))
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2 (empty ones dropped)", len(docs))
	}
	j, err := docs[0].JSON()
	if err != nil || string(j) != `{"kind":"A","n":1}` {
		t.Errorf("JSON = %s, %v", j, err)
	}
}
