#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries (and helm) from their Go modules into
# $WEFT_CACHE/bin, cached: a warm run with the same versions does nothing.
# k8s.io/kubernetes cannot be `go install`ed (its go.mod uses replace
# directives), so a small module requires it and replaces each staging module
# with its published version.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.33.4}
STAGING_VERSION=v0${K8S_VERSION#v1}          # v1.33.4 -> v0.33.4
HELM_VERSION=${HELM_VERSION:-v3.18.6}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1}
CACHE=${WEFT_CACHE:-$HOME/.cache/weft}
BIN=$CACHE/bin
WORK=$CACHE/k8s-build
STAMP=$BIN/.k8s-$K8S_VERSION-helm-$HELM_VERSION-coredns-$COREDNS_VERSION
export PATH=/usr/local/go/bin:$PATH

# Debian packages the harness runs (etcd, the container runtime, CNI plugins,
# conntrack and iptables for kube-proxy), installed when missing.
need=()
for pair in etcd:etcd-server containerd:containerd runc:runc conntrack:conntrack iptables:iptables ctr:containerd; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  apt-get update -qq
  # Do not let the packages start their own services.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if [ -f "$STAMP" ]; then
  echo "kubernetes $K8S_VERSION, helm $HELM_VERSION and coredns $COREDNS_VERSION already built in $BIN"
  exit 0
fi
mkdir -p "$BIN" "$WORK"
cd "$WORK"
start=$(date +%s)
if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
  rm -f go.mod go.sum
  go mod init weft.local/k8s-build >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
  modfile=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
  {
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # Every "k8s.io/X => ./staging/src/k8s.io/X" becomes "k8s.io/X => k8s.io/X v0.Y.Z".
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } >> go.mod
  cat > tools.go <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  go mod tidy
fi
echo "building kubernetes $K8S_VERSION (cold: ~8 min on 2 cores)"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [ -x "$BIN/$c" ] && "$BIN/$c" --version 2>/dev/null | grep -q "$K8S_VERSION" && continue
  go build -o "$BIN/$c" "k8s.io/kubernetes/cmd/$c"
  echo "  built $c ($(( $(date +%s) - start ))s)"
done
[ -x "$BIN/helm" ] && "$BIN/helm" version 2>/dev/null | grep -q "$HELM_VERSION" || GOBIN=$BIN go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "  built helm ($(( $(date +%s) - start ))s)"
[ -x "$BIN/coredns" ] && "$BIN/coredns" -version 2>/dev/null | grep -q "${COREDNS_VERSION#v}" || \
  (cd "$WORK" && CGO_ENABLED=0 GOBIN=$BIN go install "github.com/coredns/coredns@$COREDNS_VERSION")
echo "  built coredns ($(( $(date +%s) - start ))s)"
touch "$STAMP"
echo "done in $(( $(date +%s) - start ))s"
