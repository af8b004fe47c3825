# Proxy benchmarks (bench/README.md). fortio v1.66.5 is built into the cache;
# haproxy, nginx and h2load (nghttp2-client) come from Debian.
FORTIO := $(HOME)/.cache/weft/bin/fortio

.PHONY: bench bench-quick bench-tools
bench-tools:
	@test -x $(FORTIO) || GOBIN=$(HOME)/.cache/weft/bin $(GO) install fortio.org/fortio@v1.66.5
	@command -v haproxy >/dev/null && command -v nginx >/dev/null && command -v h2load >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get install -y -qq haproxy nginx-light nghttp2-client >/dev/null; } || \
	  echo "haproxy/nginx/h2load missing: their rows will be skipped"

# The full comparison: 15 s phases, results in bench/results/latest.{md,json}.
bench: bench-tools
	$(GO) run ./bench -duration 15s

# CI's correctness run: every target briefly, all requests must get 200.
bench-quick: bench-tools
	$(GO) run ./bench -quick -out $${TMPDIR:-/tmp}/weft-bench

# The destination service at scale (bench/dstscale): 500 Services, 10,000
# endpoints, 1,000 watch streams against a real API server. make test runs
# the same code at a small scale.
.PHONY: bench-destination
bench-destination:
	WEFT_DST_SCALE=full $(GO) test -count=1 -v -timeout 20m ./bench/dstscale | tee bench/results/destination.txt

# The policy controller's route propagation at scale (bench/policyscale):
# 500 HTTPRoutes, 1,000 watch streams against a real API server. make test
# runs the same code at a small scale.
.PHONY: bench-policy
bench-policy:
	WEFT_POLICY_SCALE=full $(GO) test -count=1 -v -timeout 20m ./bench/policyscale | tee bench/results/policy.txt

# The soak (bench/soak, issue 17): a meshed pair with mTLS (local identity
# service) at 1,000 rps for 10 minutes, RSS and goroutines of both proxies
# sampled every 10 s; fails unless flat. Results in bench/results/soak.{md,json}.
# Not in CI.
.PHONY: soak soak-h2 soak-quick
soak: bench-tools
	$(GO) run ./bench/soak -duration 10m

# The same with HTTP/2 on every hop (fortio sends h2c): the proxies' own
# HTTP/2 server and client. Results in bench/results/soak-h2.{md,json}.
soak-h2: bench-tools
	$(GO) run ./bench/soak -h2 -name soak-h2 -duration 10m

# The short soak: 60 s, fails on any failed request or a goroutine leak
# (too short to judge the RSS trend). Not in .ci/run: 97-110 s here with
# its builds, over the 90 s it may take there.
soak-quick: bench-tools
	$(GO) run ./bench/soak -duration 60s -warmup-load 3s -settle 10s -out $${TMPDIR:-/tmp}/weft-soak
