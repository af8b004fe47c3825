package tapapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client opens taps: Base is the tap server's URL (directly, or through
// the Kubernetes API server's service proxy); Token is the caller's bearer
// token, sent in TokenHeader.
type Client struct {
	Base  string
	HTTP  *http.Client
	Token string
}

// Watch taps a resource and calls each for every event until ctx ends, the
// stream ends, or each returns false. A refused tap returns the tap
// server's message.
func (c *Client) Watch(ctx context.Context, namespace, plural, name string, req Request, each func(Event) bool) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+Path(namespace, plural, name), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		hr.Header.Set(TokenHeader, "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return fmt.Errorf("reaching the tap server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("tap server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading the tap stream: %w", err)
		}
		if !each(ev) {
			return nil
		}
	}
}
