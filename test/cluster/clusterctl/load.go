package main

import (
	"errors"
	"fmt"

	"github.com/weftmesh/weft/internal/ociimage"
)

// importImages loads image archives into the cluster's containerd: OCI
// archives (make images writes one image index per image, for several
// platforms) and docker-archives.
func (c *cluster) importImages(tars ...string) error {
	node := ociimage.HostPlatform() // clusterctl runs on the node
	for _, t := range tars {
		args, what, err := importArgs(t, node)
		if err != nil {
			return fmt.Errorf("importing %s: %w", t, err)
		}
		if err := run(append([]string{"ctr", "--address", containerdSock, "-n", "k8s.io", "images", "import", "--no-unpack=false"}, args...)...); err != nil {
			return fmt.Errorf("importing %s: %w", t, err)
		}
		fmt.Printf("loaded %s\n", what)
	}
	return nil
}

// importArgs are ctr import's arguments for one archive. From an OCI
// archive only the node's platform is imported (ctr --platform), which the
// archive must hold; the image keeps its index, so the cluster shows the
// digest a registry would. A docker-archive is imported as it is.
func importArgs(path string, node ociimage.Platform) (args []string, what string, err error) {
	a, err := ociimage.ReadFile(path)
	if errors.Is(err, ociimage.ErrNotLayout) {
		return []string{path}, path + " (docker-archive)", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := a.Find(node)
	if err != nil {
		return nil, "", err
	}
	if a.Ref == "" {
		return nil, "", fmt.Errorf("the archive does not name its image (annotation %s)", ociimage.AnnotationContainerName)
	}
	return []string{"--platform", node.String(), path}, fmt.Sprintf("%s (%s, manifest %s)", a.Ref, node, m.Digest), nil
}
