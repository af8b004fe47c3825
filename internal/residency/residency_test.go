package residency

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestMappingsOfTakesTheExecutablesReadOnlyMappings: the code and the
// read-only data, never the writable data nor read-only data with
// private copies (a PIE's relocated RELRO segment).
func TestMappingsOfTakesTheExecutablesReadOnlyMappings(t *testing.T) {
	got, err := mappingsOf("testdata/smaps", "/usr/bin/weft-proxy")
	if err != nil {
		t.Fatal(err)
	}
	want := []Span{{0x400000, 0x9f8000, "r-xp"}, {0x9f8000, 0x10b1000, "r--p"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// A mapping whose Anonymous field is missing is not known to be
	// clean: kept.
	got, err = mappingsOf("testdata/smaps-noanon", "/usr/bin/x")
	if want := []Span{{0x9f8000, 0x10b1000, "r--p"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("without an Anonymous field: got %+v (%v), want %+v", got, err, want)
	}
	if _, err := mappingsOf("testdata/smaps", "/usr/bin/absent"); err == nil {
		t.Error("no mapping of the path: want an error")
	}
}

// TestReleaseExecutableLowersRSS runs this test binary as a child that
// releases its pages when told to, and reads the child's
// /proc/PID/smaps while it waits (idle, so that little faults back in):
// far fewer of its executable's pages are resident after; then the
// child runs on (its code faults back in) and exits cleanly.
func TestReleaseExecutableLowersRSS(t *testing.T) {
	if os.Getenv("RESIDENCY_CHILD") == "1" {
		child()
		return
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe:", err)
	}
	cmd := exec.Command(exe, "-test.run=^TestReleaseExecutableLowersRSS$")
	cmd.Env = append(os.Environ(), "RESIDENCY_CHILD=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	expect := func(want string) {
		t.Helper()
		line, err := out.ReadString('\n')
		if strings.TrimSpace(line) != want {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child said %q (%v), want %q", line, err, want)
		}
	}
	expect("ready")
	smaps := fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid)
	before := residentKiB(t, smaps, exe)
	fmt.Fprintln(stdin, "release")
	expect("released")
	after := residentKiB(t, smaps, exe)
	fmt.Fprintln(stdin, "work")
	expect("42!!")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	t.Logf("the read-only mappings of %s: %d KiB resident before, %d KiB after", exe, before, after)
	// Even idle, the child's runtime and its print fault some back, 64
	// KiB at a time (~40 % here); without the release nothing goes.
	if after*10 > before*6 {
		t.Errorf("resident %d KiB after releasing, want under 60 %% of %d KiB", after, before)
	}
}

// child waits for its orders on stdin: release, then some work.
func child() {
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	in.ReadString('\n')
	if _, err := ReleaseExecutable(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("released")
	in.ReadString('\n')
	fmt.Println(strconv.Itoa(42) + strings.Repeat("!", 2))
	in.ReadString('\n') // EOF
	os.Exit(0)
}

// residentKiB sums the Rss of exe's read-only mappings in an smaps file.
func residentKiB(t *testing.T, smaps, exe string) int {
	t.Helper()
	f, err := os.Open(smaps)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == exe && fields[1][1] == '-'
		case in && fields[0] == "Rss:":
			n, _ := strconv.Atoi(fields[1])
			total += n
		}
	}
	return total
}

// TestReleaseExecutableInAPIEBuild: a position-independent executable
// (as distributions build Go programs) keeps working after the release;
// releasing its relocated read-only data crashed it.
func TestReleaseExecutableInAPIEBuild(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	bin := t.TempDir() + "/piechild"
	build := exec.Command(gobin, "build", "-buildmode=pie", "-o", bin, "./testdata/piechild")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=pie: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "ok 2 true"; err != nil || got != want {
		t.Fatalf("the PIE child: %v, said %q, want %q", err, got, want)
	}
}
