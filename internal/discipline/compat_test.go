package discipline

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// compatNameAllowed lists the string literals outside internal/compat that
// may spell a Linkerd name, by file and literal, each with its reason. Keep
// it short: a name belongs in internal/compat.
var compatNameAllowed = map[string]string{
	// The CLI's own flag, whose long name is Linkerd's (`linkerd install
	// -L/--linkerd-namespace`); flag names are spelled where they are defined.
	"internal/cli/install.go\x00linkerd-namespace": "a CLI flag name",
}

// Linkerd's names (annotations, labels, object names, headers, values)
// are defined once, in internal/compat. A string literal elsewhere that
// contains "linkerd" or "l5d-" spells one again. Literals with white space
// are messages (flag help, errors, check descriptions) and may mention
// names; struct tags are not expressions and cannot use a constant (the
// Helm value linkerdVersion is documented in docs/compatibility.md).
func TestLinkerdNamesOnlyInCompat(t *testing.T) {
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel == "internal/compat", rel != "." && strings.HasPrefix(d.Name(), "."), d.Name() == "testdata", d.Name() == "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || strings.HasSuffix(rel, ".pb.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		tags := map[*ast.BasicLit]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if n.Tag != nil {
					tags[n.Tag] = true
				}
			case *ast.BasicLit:
				if n.Kind != token.STRING || tags[n] {
					return true
				}
				s, err := strconv.Unquote(n.Value)
				if err != nil || strings.ContainsFunc(s, unicode.IsSpace) {
					return true
				}
				low := strings.ToLower(s)
				if !strings.Contains(low, "linkerd") && !strings.Contains(low, "l5d-") {
					return true
				}
				if _, ok := compatNameAllowed[rel+"\x00"+s]; ok {
					return true
				}
				t.Errorf("%s: %q spells a Linkerd name: define it in internal/compat", rel, s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d Go files checked", checked)
	}
}
