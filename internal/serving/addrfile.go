package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

type addrFileKey struct{}

// WithAddrFile returns a context that makes Run write its servers'
// addresses to path (weft-controller's --addr-file).
func WithAddrFile(ctx context.Context, path string) context.Context {
	if path == "" {
		return ctx
	}
	return context.WithValue(ctx, addrFileKey{}, path)
}

func addrFile(ctx context.Context) string {
	p, _ := ctx.Value(addrFileKey{}).(string)
	return p
}

// WriteAddrFile writes addrs (a server's or listener's name → host:port)
// to path as one JSON object. The file appears whole (written beside it,
// then renamed), so a reader never sees half of it.
func WriteAddrFile(path string, addrs map[string]string) error {
	b, err := json.MarshalIndent(addrs, "", "  ")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing address file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing address file %s: %w", path, err)
	}
	return nil
}

// ReadAddrFile waits up to within for path to appear (the binary writing
// it is still starting) and returns the addresses it holds. exited, when
// non-nil, ends the wait early: the process will never write it.
func ReadAddrFile(path string, within time.Duration, exited <-chan struct{}) (map[string]string, error) {
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var addrs map[string]string
			if err := json.Unmarshal(b, &addrs); err != nil {
				return nil, fmt.Errorf("address file %s: %w", path, err)
			}
			return addrs, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("address file: %w", err)
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("address file %s: the process exited before writing it", path)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("address file %s not written within %v", path, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
