# Container images without Docker (docs/install.md): weft-controller,
# weft-proxy (with weft-await), weft-proxy-init (with Debian's iptables) and
# weft-prometheus (Debian's Prometheus, for viz), each one OCI archive in bin/images/ holding linux/amd64, linux/arm64 and
# linux/arm/v7, named as the chart's defaults name them. Debian's .debs are
# cached under $(HOME)/.cache/weft/debs.
IMAGES_DIR ?= $(BIN)/images

.PHONY: images
images:
	$(GO) run ./tools/build-images -out $(IMAGES_DIR)
