# Kubernetes for tests (test/cluster/README.md).
.PHONY: k8s-bins integration
# Pinned Kubernetes 1.33 binaries and helm, built from Go modules into
# $(HOME)/.cache/weft/bin; a warm run does nothing.
k8s-bins:
	bash test/cluster/build-k8s.sh

# The API-server integration tests, required to run (no skipping).
integration: k8s-bins
	WEFT_REQUIRE_K8S=1 $(GO) test -count=1 ./internal/kubetest/ ./internal/identity/...
