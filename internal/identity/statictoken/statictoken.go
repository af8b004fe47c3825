// Package statictoken is an identity.Validator for hosts without
// Kubernetes: a file maps secret tokens to the namespace and service account
// they prove, one per line:
//
//	# token                           namespace/serviceaccount
//	3f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6   vms/billing
package statictoken

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/weftmesh/weft/internal/identity"
)

// Validator maps tokens (held only as SHA-256 digests) to identities.
type Validator struct {
	byDigest       map[[32]byte]identity.Name
	controlPlaneNS string
	trustDomain    string
}

var _ identity.Validator = (*Validator)(nil)

// minTokenLen refuses guessable tokens.
const minTokenLen = 16

// Load reads a token file.
func Load(path, controlPlaneNS, trustDomain string) (*Validator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("static tokens: %w", err)
	}
	defer f.Close()
	v, err := Parse(f, controlPlaneNS, trustDomain)
	if err != nil {
		return nil, fmt.Errorf("static tokens %s: %w", path, err)
	}
	return v, nil
}

// Parse reads token lines from r.
func Parse(r io.Reader, controlPlaneNS, trustDomain string) (*Validator, error) {
	v := &Validator{byDigest: map[[32]byte]identity.Name{}, controlPlaneNS: controlPlaneNS, trustDomain: trustDomain}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want TOKEN NAMESPACE/SERVICEACCOUNT", line)
		}
		if len(fields[0]) < minTokenLen {
			return nil, fmt.Errorf("line %d: token shorter than %d characters", line, minTokenLen)
		}
		ns, sa, ok := strings.Cut(fields[1], "/")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not NAMESPACE/SERVICEACCOUNT", line, fields[1])
		}
		n := identity.Name{ServiceAccount: sa, Namespace: ns, ControlPlaneNS: controlPlaneNS, TrustDomain: trustDomain}
		if err := n.Valid(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		d := sha256.Sum256([]byte(fields[0]))
		if _, dup := v.byDigest[d]; dup {
			return nil, fmt.Errorf("line %d: duplicate token", line)
		}
		v.byDigest[d] = n
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(v.byDigest) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	return v, nil
}

// Validate returns the identity a token proves.
func (v *Validator) Validate(_ context.Context, token []byte) (identity.Name, error) {
	n, ok := v.byDigest[sha256.Sum256(bytes.TrimSpace(token))]
	if !ok {
		return identity.Name{}, fmt.Errorf("%w: unknown static token", identity.ErrUnauthenticated)
	}
	return n, nil
}
