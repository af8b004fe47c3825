package proxy

import (
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// docsTable is the settings table of docs/proxy.md: the lines starting
// with | after the heading "## Flags and environment".
func docsTable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Flags and environment\n")
	if !ok {
		t.Fatal("docs/proxy.md has no section \"Flags and environment\"")
	}
	var table strings.Builder
	started := false
	for _, line := range strings.Split(rest, "\n") {
		if strings.HasPrefix(line, "|") {
			started = true
			table.WriteString(line + "\n")
		} else if started {
			break
		}
	}
	return table.String()
}

func TestDocsListEverySetting(t *testing.T) {
	if got, want := docsTable(t), SettingsMarkdown(); got != want {
		t.Errorf("docs/proxy.md's settings table differs from proxy.Settings; want:\n%s", want)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		compat.EnvOutboundListenAddr:  "127.0.0.1:1",
		compat.EnvOutboundListenAddrs: "127.0.0.1:4140,[::1]:4140", // the later variable wins
		compat.EnvAdminListenAddr:     "127.0.0.1:2",
		compat.EnvDetectTimeout:       "250", // bare milliseconds
		compat.EnvShutdownGrace:       "5s",
		compat.EnvIngressMode:         "true",
		compat.EnvRetryBudgetRatio:    "0.5",
		compat.EnvOpaquePorts:         "25,5000-5001",
		compat.EnvDestinations:        "web.test:80=weft://web.id@127.0.0.1:4143; db.test:5432=127.0.0.1:5432",
		compat.EnvBindings:            "127.0.0.1:9000=web.test:80",
		compat.EnvPodNamespace:        "shop",
		compat.EnvPodName:             "web-0",
		compat.EnvMetricsLabels:       "team=a",
		compat.EnvIdentityLocalName:   "web.shop",
		compat.EnvDestinationSvcName:  "dst.id",
		compat.EnvPolicySvcName:       "policy.id",
		compat.EnvLog:                 "", // empty: ignored
		compat.EnvProxyCores:          "1",
		compat.EnvProxyCoresMax:       "3",
		compat.EnvProxyCoresMaxRatio:  "0.5",
	}
	c := DefaultConfig()
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"outbound", c.OutboundAddr, "127.0.0.1:4140,[::1]:4140"},
		{"admin", c.AdminAddr, "127.0.0.1:2"},
		{"detect", c.DetectTimeout, 250 * time.Millisecond},
		{"grace", c.ShutdownGrace, 5 * time.Second},
		{"ingress", c.IngressMode, true},
		{"retry ratio", c.RetryBudgetRatio, 0.5},
		{"opaque", c.OpaquePorts, map[uint16]bool{25: true, 5000: true, 5001: true}},
		{"destinations", c.Destinations, map[string][]EndpointSpec{
			"web.test:80":  {{Addr: "127.0.0.1:4143", Proxy: true, Identity: "web.id"}},
			"db.test:5432": {{Addr: "127.0.0.1:5432"}}}},
		{"bindings", c.Bindings, []Binding{{Listen: "127.0.0.1:9000", Dst: "web.test:80"}}},
		{"labels", c.MetricsLabels, map[string]string{"namespace": "shop", "pod": "web-0", "team": "a"}},
		{"identity", c.Identity.LocalName, "web.shop"},
		{"destination identity", c.DestinationName, "dst.id"},
		{"policy identity", c.PolicyName, "policy.id"},
		{"log level", c.LogLevel, "info"},
		{"cores", c.Workers, Workers{Fixed: 1, Max: 3, MaxRatio: 0.5}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	env[compat.EnvIdentityDisabled] = "1"
	c = DefaultConfig()
	c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if c.Identity.Enabled() {
		t.Errorf("%s set: identity still enabled", compat.EnvIdentityDisabled)
	}
}

func TestApplyEnvReportsEveryBadValue(t *testing.T) {
	env := map[string]string{
		compat.EnvDetectTimeout:      "soon",
		compat.EnvIngressMode:        "maybe",
		compat.EnvRetryBudgetRatio:   "-1",
		compat.EnvOpaquePorts:        "70000",
		compat.EnvBindings:           "nowhere",
		compat.EnvMetricsLabels:      "novalue",
		compat.EnvProxyCores:         "-1",
		compat.EnvProxyCoresMin:      "two",
		compat.EnvProxyCoresMax:      "1.5",
		compat.EnvProxyCoresMaxRatio: "1.5",
	}
	c := DefaultConfig()
	err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		t.Fatal("no error")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name+": ") {
			t.Errorf("the error does not name %s: %v", name, err)
		}
	}
}

func TestFlags(t *testing.T) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Flags(fs, &c)
	err := fs.Parse([]string{"--outbound-addr", "127.0.0.1:5", "--ingress", "--detect-timeout", "2s",
		"--dst", "a.test:80=127.0.0.1:1", "--dst", "b.test:80=127.0.0.1:2", "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	if c.OutboundAddr != "127.0.0.1:5" || !c.IngressMode || c.DetectTimeout != 2*time.Second || len(c.Destinations) != 2 || c.LogLevel != "debug" {
		t.Errorf("flags not applied: %+v", c)
	}
	if err := fs.Parse([]string{"--detect-timeout", "soon"}); err == nil {
		t.Error("--detect-timeout soon: no error")
	}
	// Every setting with a flag has it, with its default and variables in --help.
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for _, s := range Settings {
		if s.Flag == "" {
			continue
		}
		f := fs.Lookup(s.Flag)
		if f == nil {
			t.Errorf("no flag --%s", s.Flag)
			continue
		}
		if f.DefValue != s.Default {
			t.Errorf("--%s: default %q, want %q", s.Flag, f.DefValue, s.Default)
		}
		for _, e := range s.Env {
			if !strings.Contains(f.Usage, e) {
				t.Errorf("--%s: help does not name %s", s.Flag, e)
			}
		}
	}
	if !strings.Contains(help.String(), "-shutdown-endpoint\n") {
		t.Errorf("--shutdown-endpoint is not shown as a boolean flag:\n%s", help.String())
	}
}
