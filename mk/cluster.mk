# Kubernetes for tests (test/cluster/README.md).
.PHONY: k8s-bins integration
# Pinned Kubernetes 1.33 binaries and helm, built from Go modules into
# $(HOME)/.cache/weft/bin; a warm run does nothing.
k8s-bins:
	bash test/cluster/build-k8s.sh

# The API-server integration tests, required to run (no skipping).
integration: k8s-bins
	WEFT_REQUIRE_K8S=1 $(GO) test -count=1 ./internal/kubetest/ ./internal/identity/...

# The single-node cluster (test/cluster/README.md). State: $(WEFT_CLUSTER_DIR), default /tmp/weft-cluster.
.PHONY: cluster-up cluster-down cluster-status e2e
cluster-up: k8s-bins
	$(GO) run ./test/cluster/clusterctl up

cluster-down:
	$(GO) run ./test/cluster/clusterctl down

cluster-status:
	$(GO) run ./test/cluster/clusterctl status

# End-to-end tests against the running cluster (make cluster-up first).
e2e:
	KUBECONFIG=$${WEFT_CLUSTER_DIR:-/tmp/weft-cluster}/kubeconfig $(GO) test -tags e2e -count=1 -timeout 45m -v ./test/e2e/...
