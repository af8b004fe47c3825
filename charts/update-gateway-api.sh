#!/usr/bin/env bash
# Copies the Gateway API CRDs weft-crds installs (HTTPRoute, GRPCRoute; the
# standard channel, and the experimental one for gatewayAPIChannel:
# experimental, which adds HTTPRoute's rules[].retry) from the pinned sigs.k8s.io/gateway-api module
# (Apache-2.0, kubernetes-sigs/gateway-api), with the schemas' description
# fields dropped so that `kubectl apply` (client-side, whose annotation is
# limited to 256 KiB) takes them. Needs python3 with PyYAML.
set -euo pipefail
version=v1.4.1
cd "$(dirname "$0")"
dir=$(go mod download -json "sigs.k8s.io/gateway-api@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
for channel in standard experimental; do
for r in httproutes grpcroutes; do
  out="weft-crds/gateway-api/$r.yaml"
  [ "$channel" = standard ] || out="weft-crds/gateway-api/$r-$channel.yaml"
  python3 - "$dir/config/crd/$channel/gateway.networking.k8s.io_$r.yaml" "$out" "$channel" <<'PY'
import sys, yaml
def strip(n):
    if isinstance(n, dict):
        return {k: strip(v) for k, v in n.items() if k != "description"}
    if isinstance(n, list):
        return [strip(v) for v in n]
    return n
doc = yaml.safe_load(open(sys.argv[1]))
for v in doc["spec"]["versions"]:
    v["schema"] = strip(v["schema"])
with open(sys.argv[2], "w") as f:
    f.write("# Gateway API %s (%s channel), schema descriptions dropped: charts/update-gateway-api.sh\n" % (doc["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"], sys.argv[3]))
    yaml.safe_dump(doc, f, sort_keys=False)
PY
done
done
echo "Gateway API $version CRDs copied into weft-crds/gateway-api/"
