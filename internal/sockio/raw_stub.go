//go:build !unix

package sockio

import "syscall"

// Not a Unix: Wrap does not wrap, and nothing calls these.

func rawRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
func rawPeek(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
