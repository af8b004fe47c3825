// Package residency gives back the pages of the program's own executable
// that start-up touched and serving does not use.
//
// A Go binary's code and read-only data are file pages mapped from the
// executable. Start-up (every package's init, the first stack growths
// reading the function tables) touches most of them, and the kernel maps
// 64 KiB around every fault (fault-around), so an idle proxy's RSS was
// ~85 % of its mapped binary (issue 17). ReleaseExecutable drops the
// process's mappings of those pages (MADV_DONTNEED). The pages stay in the
// page cache, shared with every process of the same binary; the ones still
// used fault back in as minor faults (still 64 KiB at a time: MADV_RANDOM
// does not turn fault-around off, measured). Only mappings that are not
// writable and hold no anonymous pages are touched: in a private mapping
// MADV_DONTNEED discards the pages the process changed.
package residency

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Span is one released mapping.
type Span struct {
	Start, End uintptr
	Perms      string
}

// ReleaseExecutable releases the read-only mappings of the running
// executable that hold no private copy of a page, returning them.
func ReleaseExecutable() ([]Span, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("finding the executable: %w", err)
	}
	spans, err := mappingsOf("/proc/self/smaps", exe)
	if err != nil {
		return nil, err
	}
	for _, s := range spans {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.Start, s.End-s.Start, syscall.MADV_DONTNEED); e != 0 {
			return nil, fmt.Errorf("madvise(MADV_DONTNEED) %#x-%#x: %w", s.Start, s.End, e)
		}
	}
	return spans, nil
}

// mappingsOf reads an smaps file (proc(5)) and returns the mappings of
// path that are neither writable nor hold anonymous pages. A read-only
// mapping can hold them: in a position-independent build the dynamic
// loader relocates pointers in read-only data (RELRO) before protecting
// it, and those copies exist nowhere else; MADV_DONTNEED would bring back
// the file's unrelocated bytes (a PIE weft-proxy crashed so).
func mappingsOf(smaps, path string) ([]Span, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []Span
	var private []bool // per span: anonymous pages, or not known
	cand := false      // the fields that follow are the last span's
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.HasSuffix(fields[0], ":") { // a field of the mapping above
			if cand && fields[0] == "Anonymous:" {
				private[len(private)-1] = len(fields) < 2 || fields[1] != "0"
			}
			continue
		}
		// address perms offset dev inode pathname
		cand = false
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		perms := fields[1]
		if len(perms) < 2 || perms[1] != '-' {
			continue // writable: its pages may hold the program's data
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("%s: malformed line %q", smaps, sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("%s: malformed range in %q", smaps, sc.Text())
		}
		spans = append(spans, Span{Start: uintptr(start), End: uintptr(end), Perms: perms})
		private = append(private, true) // until its Anonymous field says 0
		cand = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", smaps, err)
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("%s: no read-only mapping of %s", smaps, path)
	}
	kept := spans[:0]
	for i, s := range spans {
		if !private[i] {
			kept = append(kept, s)
		}
	}
	return kept, nil
}
