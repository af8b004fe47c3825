# Container images without Docker (docs/install.md): weft-controller,
# weft-proxy (with weft-await), weft-proxy-init (with Debian's iptables) and
# weft-prometheus (Debian's Prometheus, for viz), each one OCI archive in bin/images/ holding linux/amd64, linux/arm64 and
# linux/arm/v7, and weft-jaeger (Jaeger v1.76.0 from its Go module in
# tools/jaeger, its own go.mod; linux/amd64 only), named as the chart's
# defaults name them. Debian's .debs are cached under
# $(HOME)/.cache/weft/debs, the Jaeger binary under
# $(HOME)/.cache/weft/tools/jaeger-<key> (key: tools/jaeger's go.mod and
# go.sum, the Go version, the platform): only a cold cache compiles it.
IMAGES_DIR ?= $(BIN)/images

.PHONY: images jaeger-image
images:
	$(GO) run ./tools/build-images -out $(IMAGES_DIR)

jaeger-image:
	$(GO) run ./tools/build-images -out $(IMAGES_DIR) -images weft-jaeger
