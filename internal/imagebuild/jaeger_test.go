package imagebuild

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/ociimage"
	"github.com/weftmesh/weft/internal/proctest"
)

// chartJaegerConfig renders the weft-jaeger chart (defaults) and returns
// Jaeger's config from its ConfigMap, each 0.0.0.0:<port> replaced by the
// loopback address addrs gives for that port.
func chartJaegerConfig(t *testing.T, addrs map[string]string) string {
	t.Helper()
	out, err := install.Render(install.JaegerChart, "linkerd-jaeger", "linkerd-jaeger", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(out, "\n---\n") {
		var cm struct {
			Kind     string                `json:"kind"`
			Metadata struct{ Name string } `json:"metadata"`
			Data     map[string]string     `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil || cm.Kind != "ConfigMap" || cm.Metadata.Name != "jaeger-config" {
			continue
		}
		cfg := cm.Data["config.yaml"]
		for port, addr := range addrs {
			if !strings.Contains(cfg, "0.0.0.0:"+port) {
				t.Fatalf("the chart's Jaeger config has no 0.0.0.0:%s:\n%s", port, cfg)
			}
			cfg = strings.ReplaceAll(cfg, "0.0.0.0:"+port, addr)
		}
		return cfg
	}
	t.Fatalf("the weft-jaeger chart renders no ConfigMap jaeger-config:\n%s", out)
	return ""
}

// TestJaegerImage: the weft-jaeger archive holds linux/amd64 only, under
// the chart's default name; its binary, run with the chart's config, is
// healthy, takes a span over OTLP/gRPC and returns it from the query API
// (what the UI and weft jaeger dashboard read), and serves a page at /.
func TestJaegerImage(t *testing.T) {
	archive := built(t)[Jaeger]
	a, err := ociimage.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := readJaegerImage(filepath.Join(repoRoot(t), "charts", "weft-jaeger"))
	if err != nil {
		t.Fatal(err)
	}
	amd64 := parse(t, "linux/amd64")
	if a.Ref != ref || !slices.Equal(a.Platforms(), []ociimage.Platform{amd64}) {
		t.Fatalf("weft-jaeger archive: %q holding %v, want %q holding linux/amd64 only", a.Ref, a.Platforms(), ref)
	}
	if ociimage.HostPlatform() != amd64 {
		t.Skip("the Jaeger image is built for linux/amd64 only")
	}
	root := extract(t, archive, amd64)
	addrs := map[string]string{"4317": proctest.FreeAddr(t), "4318": proctest.FreeAddr(t), "16686": proctest.FreeAddr(t), "16685": proctest.FreeAddr(t), "13133": proctest.FreeAddr(t)}
	cfg := chartJaegerConfig(t, addrs)
	// The metrics reader takes host and port apart.
	metrics := proctest.FreeAddr(t)
	if !strings.Contains(cfg, "{host: 0.0.0.0, port: 8888}") {
		t.Fatalf("the chart's Jaeger config has no metrics reader on 0.0.0.0:8888:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, "{host: 0.0.0.0, port: 8888}", fmt.Sprintf("{host: 127.0.0.1, port: %s}", metrics[strings.LastIndexByte(metrics, ':')+1:]), 1)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "jaeger"), "--config="+cfgPath)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	exited := startUntilCleanup(t, cmd)
	if err := waitReady("http://"+addrs["13133"]+"/status", exited, time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	t.Logf("Jaeger healthy %v after start", time.Since(start).Round(10*time.Millisecond))

	// One span over OTLP/gRPC, as the proxies send them.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(addrs["4317"]), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "linkerd-proxy"), attribute.String("app", "web"))))
	_, span := tp.Tracer("test").Start(ctx, "/orders/7", oteltrace.WithSpanKind(oteltrace.SpanKindServer))
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("exporting to Jaeger: %v\n%s", err, logs.String())
	}
	traceID := span.SpanContext().TraceID()
	url := "http://" + addrs["16686"] + "/api/traces/" + hex.EncodeToString(traceID[:])
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		body, status := get(t, url)
		if status == http.StatusOK && strings.Contains(body, `"operationName":"/orders/7"`) && strings.Contains(body, `"serviceName":"linkerd-proxy"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s\n%s", url, status, body, logs.String())
		}
	}
	// Built from the Go module, the UI is the module's placeholder page
	// (Jaeger's release embeds the UI built with npm): docs/tracing.md.
	if body, status := get(t, "http://"+addrs["16686"]+"/"); status != http.StatusOK || !strings.Contains(body, "<title>") {
		t.Errorf("the UI: %d %.300s", status, body)
	}
	if body, status := get(t, "http://"+addrs["16686"]+"/api/services"); status != http.StatusOK || !strings.Contains(body, `"linkerd-proxy"`) {
		t.Errorf("/api/services: %d %.300s", status, body)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), resp.StatusCode
}
