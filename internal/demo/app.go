package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/serving"
)

// AppConfig is one process of the demo application. Role is "web" (calls
// emoji and voting for each request, and degrades gracefully when voting
// fails), "emoji" (answers after Delay), "voting" (fails FailRate of its
// requests with 500) or "bot" (sends Rate requests per second to Target).
type AppConfig struct {
	Role     string
	Listen   string        // web, emoji, voting
	ListenFD int           // instead of Listen: a listening socket inherited as this descriptor (weft demo's explicit mode)
	AddrFile string        // where to write the bound address once serving (key "demo ROLE server")
	Emoji    string        // web: base URL of emoji (through web's proxy)
	Voting   string        // web: base URL of voting
	Target   string        // bot: base URL of web (through the bot's proxy)
	Rate     float64       // bot: requests per second
	Delay    time.Duration // emoji: added to every answer
	FailRate float64       // voting: fraction answered 500
}

// RunApp serves one role until ctx ends.
func RunApp(ctx context.Context, cfg AppConfig, log *slog.Logger) error {
	switch cfg.Role {
	case "bot":
		if cfg.Target == "" || cfg.Rate <= 0 {
			return errors.New("bot needs --target and a positive --rate")
		}
		return runBot(ctx, cfg, log)
	case "web", "emoji", "voting":
	default:
		return fmt.Errorf("unknown role %q: want web, emoji, voting or bot", cfg.Role)
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return fmt.Errorf("--fail-rate %v: want a fraction between 0 and 1", cfg.FailRate)
	}
	l, err := appListener(cfg)
	if err != nil {
		return fmt.Errorf("%s listener: %w", cfg.Role, err)
	}
	log.Info("demo app serving", "role", cfg.Role, "addr", l.Addr().String())
	return serving.Run(serving.WithAddrFile(ctx, cfg.AddrFile), nil,
		serving.HTTP("demo "+cfg.Role+" server", l, &http.Server{Handler: appHandler(cfg)}, 5*time.Second))
}

// appListener binds cfg.Listen, or takes the socket inherited as
// cfg.ListenFD: weft demo binds it and hands it over, so that the address
// it gave the app's proxy is the app's from the start.
func appListener(cfg AppConfig) (net.Listener, error) {
	if cfg.ListenFD <= 0 {
		ls, err := serving.Listen(cfg.Listen)
		if err != nil {
			return nil, err
		}
		return ls[0], nil
	}
	f := os.NewFile(uintptr(cfg.ListenFD), "inherited listener")
	if f == nil {
		return nil, fmt.Errorf("descriptor %d: not open", cfg.ListenFD)
	}
	defer f.Close() // FileListener has its own copy
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d: %w", cfg.ListenFD, err)
	}
	return l, nil
}

var emojis = []string{"🍩", "🐳", "🚀", "🦄", "🌮", "🎉", "🐙", "🍕"}

func appHandler(cfg AppConfig) http.Handler {
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(ctx context.Context, url string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", url, resp.Status)
		}
		return string(b), nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch cfg.Role {
		case "emoji":
			if cfg.Delay > 0 {
				select {
				case <-time.After(cfg.Delay):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprint(w, emojis[rand.IntN(len(emojis))])
		case "voting":
			if rand.Float64() < cfg.FailRate {
				http.Error(w, "voting is having a bad day", http.StatusInternalServerError)
				return
			}
			fmt.Fprint(w, "vote recorded")
		case "web":
			e, err := get(r.Context(), cfg.Emoji+"/emoji")
			if err != nil {
				http.Error(w, "emoji: "+err.Error(), http.StatusBadGateway)
				return
			}
			vote := "vote recorded"
			if _, err := get(r.Context(), cfg.Voting+"/vote"); err != nil {
				vote = "vote not recorded, try again" // a degraded answer, still a page
			}
			fmt.Fprintf(w, "%s %s\n", e, vote)
		}
	})
}

// runBot sends requests at a fixed rate (at most 64 in flight) until ctx
// ends, then waits for the ones in flight.
func runBot(ctx context.Context, cfg AppConfig, log *slog.Logger) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var sent, ok, failed atomic.Int64
	log.Info("vote bot started", "target", cfg.Target, "rate", cfg.Rate)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			log.Info("vote bot stopped", "sent", sent.Load(), "ok", ok.Load(), "failed", failed.Load())
			return nil
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // the mesh is behind: skip a beat rather than pile up
		}
		wg.Add(1)
		sent.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp, err := client.Get(cfg.Target + "/")
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}()
	}
}
