// Package ociimage writes container images as OCI image-layout archives and
// reads them back, without Docker or a registry.
//
// An archive holds the oci-layout file, index.json and blobs/sha256/…: one
// image index (named by the io.containerd.image.name and
// org.opencontainers.image.ref.name annotations) listing one manifest per
// platform, each with an image config and a single gzip'd tar layer. What
// `ctr images import`, `skopeo copy oci-archive:…` and registries read.
//
// Writing is deterministic: entries are sorted, owned by root, dated at the
// Unix epoch, and neither the config nor gzip carries a timestamp, so the
// same files give the same digests on every machine.
package ociimage

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Platform is an image's os/architecture[/variant], as in an image index.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String is the docker/containerd spelling: linux/arm/v7.
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform reads os/arch[/variant], e.g. linux/amd64 or linux/arm/v7.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return Platform{}, fmt.Errorf("platform %q: empty or padded part", s)
		}
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// HostPlatform is the platform this program was built for (with GOARM's
// variant for 32-bit ARM), which is the machine's when it runs natively.
func HostPlatform() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
				}
			}
		}
	}
	return p
}
