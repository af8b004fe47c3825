package inject

import (
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/version"
)

// LoadValues reads the chart's values file (path; "" for the defaults)
// and the trust anchors file (anchorsPath; "" to keep the values'
// identityTrustAnchorsPEM) over the defaults.
func LoadValues(path, anchorsPath, controllerNS string) (Values, error) {
	valuesYAML, anchors, err := ReadValuesFiles(path, anchorsPath)
	if err != nil {
		return Values{}, err
	}
	v, err := BuildValues(valuesYAML, anchors, controllerNS)
	if err != nil && path != "" {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, err
}

// ReadValuesFiles reads what LoadValues decodes; an empty path reads nothing.
func ReadValuesFiles(path, anchorsPath string) (valuesYAML []byte, anchors string, err error) {
	if path != "" {
		if valuesYAML, err = os.ReadFile(path); err != nil {
			return nil, "", fmt.Errorf("values: %w", err)
		}
	}
	if anchorsPath != "" {
		b, err := os.ReadFile(anchorsPath)
		if err != nil {
			return nil, "", fmt.Errorf("trust anchors: %w", err)
		}
		anchors = string(b)
	}
	return valuesYAML, anchors, nil
}

// BuildValues decodes the chart's values (the values key of linkerd-config;
// nil for the defaults) over the defaults; anchorsPEM, when not empty (the
// ca-bundle.crt of linkerd-identity-trust-roots), replaces the values'
// identityTrustAnchorsPEM.
func BuildValues(valuesYAML []byte, anchorsPEM, controllerNS string) (Values, error) {
	v := DefaultValues()
	v.Version = version.Version
	if len(valuesYAML) > 0 {
		if err := yaml.Unmarshal(valuesYAML, &v); err != nil {
			return v, fmt.Errorf("values: %w", err)
		}
	}
	if anchorsPEM != "" {
		v.IdentityTrustAnchorsPEM = anchorsPEM
	}
	if v.IdentityTrustDomain == "" {
		v.IdentityTrustDomain = v.ClusterDomain
	}
	if v.IdentityTrustAnchorsPEM == "" {
		return v, errors.New("no trust anchors: give --trust-anchors-file or identityTrustAnchorsPEM in the values")
	}
	if err := v.Proxy.check(); err != nil {
		return v, fmt.Errorf("values: %w", err)
	}
	v.ControllerNamespace = controllerNS
	return v, nil
}
