package proctest

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// IOCount is the counter name (rchar, syscr, …) of an I/O accounting
// file: /proc/self/io for the process, /proc/thread-self/io for the
// calling thread (lock it: runtime.LockOSThread). The test is skipped
// where the file does not exist.
func IOCount(t testing.TB, file, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Skipf("no I/O counters: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s %s %q: %v", file, name, v, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in %s: %q", name, file, b)
	return 0
}
