//go:build unix && (!linux || race || 386)

package sockio

import "syscall"

// The same calls through the syscall package: off Linux (where Wrap does
// not wrap), on linux/386 (no recvfrom syscall of its own), and in race
// builds, where the syscall package tells the race detector what a read
// or write synchronizes (bytes written on one goroutine and read on
// another); raw syscalls would hide that from it.

func rawRead(fd uintptr, p []byte) (int, syscall.Errno)  { return errnoOf(syscall.Read(int(fd), p)) }
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) { return errnoOf(syscall.Write(int(fd), p)) }

func rawPeek(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), p, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return errnoOf(n, err)
}

func errnoOf(n int, err error) (int, syscall.Errno) {
	if err == nil {
		return n, 0
	}
	if errno, ok := err.(syscall.Errno); ok {
		return 0, errno
	}
	return 0, syscall.EIO
}
