//go:build !linux

package sockio

import "syscall"

// supported is false: Wrap leaves connections alone off Linux, and the
// syscalls go through the scheduler as usual.
const supported = false

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
