package install

import (
	"fmt"
	"os"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// Options are `weft install`'s inputs.
type Options struct {
	Namespace      string
	Version        string   // linkerdVersion: the images' tag
	AnchorsFile    string   // trust anchors PEM; with the issuer files, or none of them: all generated
	IssuerCertFile string   // issuer certificate PEM (scheme linkerd.io/tls)
	IssuerKeyFile  string   // its key
	ExternalIssuer bool     // scheme kubernetes.io/tls: the issuer Secret is someone else's (cert-manager)
	ValuesFiles    []string // -f, in order
	Sets           []string // --set key=value
	SetStrings     []string // --set-string
	SetFiles       []string // --set-file key=path
	Now            time.Time
}

// ControlPlaneValues builds the control plane chart's values: generated or
// given identity material, then values files, then --set flags.
func ControlPlaneValues(o Options) (map[string]any, error) {
	vals := map[string]any{"installNamespace": true, compat.ValuesVersionKey: o.Version}
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	var anchors, crt, key string
	var err error
	given := o.AnchorsFile != "" || o.IssuerCertFile != "" || o.IssuerKeyFile != ""
	switch {
	case o.ExternalIssuer:
		if o.AnchorsFile == "" {
			return nil, fmt.Errorf("--identity-external-issuer needs --identity-trust-anchors-file (the root that signs the issuer)")
		}
		if anchors, err = read(o.AnchorsFile); err != nil {
			return nil, err
		}
	case given:
		if o.AnchorsFile == "" || o.IssuerCertFile == "" || o.IssuerKeyFile == "" {
			return nil, fmt.Errorf("give all of --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file, or none to have them generated")
		}
		for _, f := range []struct {
			dst  *string
			path string
		}{{&anchors, o.AnchorsFile}, {&crt, o.IssuerCertFile}, {&key, o.IssuerKeyFile}} {
			if *f.dst, err = read(f.path); err != nil {
				return nil, err
			}
		}
	default:
		now := o.Now
		if now.IsZero() {
			now = time.Now()
		}
		root, err := pki.NewRoot(compat.TrustAnchorCNPrefix+compat.DefaultIdentityTrustDomain, now.Add(-time.Minute), 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		iss, err := pki.NewIssuer(root, compat.IssuerCNPrefix+compat.DefaultIdentityTrustDomain, now.Add(-time.Minute), 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		anchors, crt, key = string(root.CertPEM), string(iss.CertPEM), string(iss.KeyPEM)
	}
	vals["identityTrustAnchorsPEM"] = anchors
	issuer := map[string]any{"scheme": compat.IssuerSchemeLinkerd, "tls": map[string]any{"crtPEM": crt, "keyPEM": key}}
	if o.ExternalIssuer {
		issuer = map[string]any{"scheme": "kubernetes.io/tls"}
	}
	vals["identity"] = map[string]any{"issuer": issuer}
	return Overlay(vals, o)
}

// Overlay applies values files and --set flags over vals, as helm does.
func Overlay(vals map[string]any, o Options) (map[string]any, error) {
	for _, f := range o.ValuesFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		vals = chartutil.MergeTables(m, vals) // the file wins, as with helm -f
	}
	for _, s := range o.Sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	for _, s := range o.SetStrings {
		if err := strvals.ParseIntoString(s, vals); err != nil {
			return nil, fmt.Errorf("--set-string %s: %w", s, err)
		}
	}
	for _, s := range o.SetFiles {
		reader := func(rs []rune) (any, error) {
			b, err := os.ReadFile(string(rs))
			return string(b), err
		}
		if err := strvals.ParseIntoFile(s, vals, reader); err != nil {
			return nil, fmt.Errorf("--set-file %s: %w", s, err)
		}
	}
	return vals, nil
}
