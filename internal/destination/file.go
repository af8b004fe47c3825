package destination

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
)

// FileBackend serves targets from a registry file (YAML or JSON), for hosts
// without Kubernetes:
//
//	services:
//	- name: web.shop.svc.cluster.local:80
//	  labels: {dst_namespace: shop, dst_service: web}
//	  opaque: false
//	  endpoints:
//	  - {addr: 127.0.0.1:9001, identity: web.shop.serviceaccount.identity.linkerd.cluster.local, meshed: true}
//
// A meshed endpoint of an opaque service is reached over mTLS at its
// proxy's inbound port (inboundPort, default 4143) with Weft's opaque
// transport.
//
// The file is re-read when it changes; an invalid file is logged and the
// last good registry keeps serving.
type FileBackend struct {
	path string
	log  *slog.Logger

	subs        *Subscriptions[Snapshot]
	profileSubs *Subscriptions[Profile]

	mu       sync.Mutex
	services map[string]fileService
	stamp    string // size+mtime of what was loaded
	loads    atomic.Int64
}

type fileRegistry struct {
	Services []fileService `json:"services"`
}

type fileService struct {
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	Opaque    bool              `json:"opaque,omitempty"`
	Endpoints []fileEndpoint    `json:"endpoints"`
	Routes    []fileRoute       `json:"routes,omitempty"`
}

// fileRoute is a ServiceProfile route, flattened.
type fileRoute struct {
	Name      string `json:"name"`
	Method    string `json:"method,omitempty"`
	PathRegex string `json:"pathRegex,omitempty"`
	Timeout   string `json:"timeout,omitempty"`
	Retryable bool   `json:"isRetryable,omitempty"`
}

type fileEndpoint struct {
	Addr     string `json:"addr"`
	Weight   uint32 `json:"weight,omitempty"`
	Identity string `json:"identity,omitempty"`
	Meshed   bool   `json:"meshed,omitempty"`
	// InboundPort is a meshed endpoint's proxy inbound port, where opaque
	// connections arrive over mTLS (default 4143).
	InboundPort uint32            `json:"inboundPort,omitempty"`
	Zone        string            `json:"zone,omitempty"`
	Terminating bool              `json:"terminating,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

var _ Backend = (*FileBackend)(nil)

// NewFileBackend loads path; it fails if the first load fails.
func NewFileBackend(path string, log *slog.Logger) (*FileBackend, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &FileBackend{path: path, log: log}
	b.subs = NewSubscriptions(b.snapshot)
	b.profileSubs = NewSubscriptions(func(target string) Profile {
		p, _ := b.Profile(target)
		return p
	})
	if _, err := b.reload(); err != nil {
		return nil, err
	}
	return b, nil
}

// ParseRegistry parses and validates registry file contents.
func ParseRegistry(data []byte) (map[string]fileService, error) {
	var reg fileRegistry
	if err := yaml.UnmarshalStrict(data, &reg); err != nil {
		return nil, fmt.Errorf("parsing registry: %w", err)
	}
	out := map[string]fileService{}
	for i, s := range reg.Services {
		if _, _, err := net.SplitHostPort(s.Name); err != nil {
			return nil, fmt.Errorf("service %d: name %q must be host:port", i+1, s.Name)
		}
		if _, dup := out[s.Name]; dup {
			return nil, fmt.Errorf("service %q listed twice", s.Name)
		}
		for _, e := range s.Endpoints {
			if _, _, err := net.SplitHostPort(e.Addr); err != nil {
				return nil, fmt.Errorf("service %q: endpoint %q must be host:port", s.Name, e.Addr)
			}
			if e.Identity != "" && !e.Meshed {
				return nil, fmt.Errorf("service %q: endpoint %s has an identity but is not meshed", s.Name, e.Addr)
			}
		}
		for _, r := range s.Routes {
			if r.Timeout != "" {
				if _, err := time.ParseDuration(r.Timeout); err != nil {
					return nil, fmt.Errorf("service %q: route %q: timeout %q: %v", s.Name, r.Name, r.Timeout, err)
				}
			}
			if _, err := regexp.Compile(r.PathRegex); err != nil {
				return nil, fmt.Errorf("service %q: route %q: pathRegex: %v", s.Name, r.Name, err)
			}
		}
		out[s.Name] = s
	}
	return out, nil
}

// reload re-reads the file if it changed and reports whether it did.
func (b *FileBackend) reload() (bool, error) {
	fi, err := os.Stat(b.path)
	if err != nil {
		return false, fmt.Errorf("registry %s: %w", b.path, err)
	}
	stamp := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
	b.mu.Lock()
	same := stamp == b.stamp
	b.mu.Unlock()
	if same {
		return false, nil
	}
	data, err := os.ReadFile(b.path)
	if err != nil {
		return false, fmt.Errorf("registry %s: %w", b.path, err)
	}
	services, err := ParseRegistry(data)
	if err != nil {
		return false, fmt.Errorf("registry %s: %w", b.path, err)
	}
	b.mu.Lock()
	b.services, b.stamp = services, stamp
	b.mu.Unlock()
	b.loads.Add(1)
	b.subs.RefreshAll()
	b.profileSubs.RefreshAll()
	return true, nil
}

// Loads counts the versions of the file loaded, the first one included: a
// writer of the file learns from it (weft-controller destination's
// destination_registry_loads_total) that its change is being served.
func (b *FileBackend) Loads() int64 { return b.loads.Load() }

// Run re-reads the file every interval until ctx ends.
func (b *FileBackend) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if changed, err := b.reload(); err != nil {
				b.log.Error("registry not reloaded; serving the last good one", "err", err)
			} else if changed {
				b.log.Info("registry reloaded", "path", b.path)
			}
		}
	}
}

func (b *FileBackend) snapshot(target string) Snapshot {
	b.mu.Lock()
	svc, ok := b.services[target]
	b.mu.Unlock()
	if !ok {
		return Snapshot{Exists: false}
	}
	snap := Snapshot{Exists: true, Labels: svc.Labels}
	for _, e := range svc.Endpoints {
		p := ProtocolUnknown
		switch {
		case svc.Opaque:
			p = ProtocolOpaque
		case e.Meshed:
			p = ProtocolProxy
		}
		ep := Endpoint{Addr: e.Addr, Weight: e.Weight, Identity: e.Identity, Meshed: e.Meshed,
			Protocol: p, Zone: e.Zone, Terminating: e.Terminating, Labels: e.Labels}
		if e.Meshed && svc.Opaque {
			ep.OpaqueTransportPort = e.InboundPort
			if ep.OpaqueTransportPort == 0 {
				ep.OpaqueTransportPort = compat.InboundPort
			}
		}
		snap.Endpoints = append(snap.Endpoints, ep)
	}
	return snap
}

// Subscribe implements Backend.
func (b *FileBackend) Subscribe(target string, update func(Snapshot)) (func(), error) {
	return b.subs.Add(target, update), nil
}

// Profile implements Backend.
func (b *FileBackend) Profile(target string) (Profile, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	svc, ok := b.services[target]
	if !ok {
		return Profile{}, nil
	}
	p := Profile{FullyQualifiedName: svc.Name, Opaque: svc.Opaque}
	for _, r := range svc.Routes {
		d, _ := time.ParseDuration(r.Timeout) // checked at load
		p.Routes = append(p.Routes, Route{Name: r.Name, Method: r.Method, PathRegex: r.PathRegex, Timeout: d, Retryable: r.Retryable})
	}
	return p, nil
}

// SubscribeProfile implements ProfileSubscriber: profiles follow edits of
// the registry.
func (b *FileBackend) SubscribeProfile(target string, update func(Profile)) (func(), error) {
	return b.profileSubs.Add(target, update), nil
}
