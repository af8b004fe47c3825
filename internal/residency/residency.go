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
// writable are touched: for a private writable mapping MADV_DONTNEED would
// discard the program's data.
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
// executable, returning them.
func ReleaseExecutable() ([]Span, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("finding the executable: %w", err)
	}
	spans, err := mappingsOf("/proc/self/maps", exe)
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

// mappingsOf reads a maps file (proc(5)) and returns the mappings of path
// that are not writable.
func mappingsOf(maps, path string) ([]Span, error) {
	f, err := os.Open(maps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var spans []Span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode pathname
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != path {
			continue
		}
		perms := fields[1]
		if len(perms) < 2 || perms[1] != '-' {
			continue // writable: its pages may hold the program's data
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("%s: malformed line %q", maps, sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("%s: malformed range in %q", maps, sc.Text())
		}
		spans = append(spans, Span{Start: uintptr(start), End: uintptr(end), Perms: perms})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", maps, err)
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("%s: no read-only mapping of %s", maps, path)
	}
	return spans, nil
}
