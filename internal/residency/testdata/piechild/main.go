// Command piechild releases its executable's pages, then uses what a
// position-independent build's loader relocated (type descriptors,
// interface tables, a map of functions) and prints "ok": built with
// -buildmode=pie by TestReleaseExecutableInAPIEBuild.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/weftmesh/weft/internal/residency"
)

func main() {
	spans, err := residency.ReleaseExecutable()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ops := map[string]func(string) string{"upper": strings.ToUpper, "lower": strings.ToLower}
	var names []string
	for k := range ops {
		names = append(names, k)
	}
	sort.Strings(names)
	var w io.Writer = os.Stdout
	err = fmt.Errorf("wrapped: %w", errors.New(ops["lower"]("OK")))
	fmt.Fprintln(w, errors.Unwrap(err), len(names), len(spans) > 0)
}
