package metricsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// API paths.
const (
	PathStat    = "/api/v1/stat"
	PathEdges   = "/api/v1/edges"
	PathVersion = "/api/v1/version"
)

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the problem: Code is one of unknown-kind, bad-request,
// not-found, not-meshed, prometheus-unavailable, internal.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Handler serves the API.
func Handler(svc *Service, version string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStat, func(w http.ResponseWriter, r *http.Request) {
		req, err := StatRequestFromQuery(r.URL.Query())
		if err != nil {
			writeError(w, log, err)
			return
		}
		resp, err := svc.Stat(r.Context(), req)
		if err != nil {
			writeError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("GET "+PathEdges, func(w http.ResponseWriter, r *http.Request) {
		req, err := EdgeRequestFromQuery(r.URL.Query())
		if err != nil {
			writeError(w, log, err)
			return
		}
		resp, err := svc.Edges(r.Context(), req)
		if err != nil {
			writeError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("GET "+PathRoutes, resourceHandler(svc.Routes, log))
	mux.HandleFunc("GET "+PathAuthz, resourceHandler(svc.Authz, log))
	mux.HandleFunc("GET "+PathPrometheusSD, func(w http.ResponseWriter, r *http.Request) {
		if svc.Kube == nil {
			writeError(w, log, &BadRequestError{Msg: "Prometheus service discovery needs Kubernetes access (the metrics API runs with --no-kube)"})
			return
		}
		groups, err := PodTargets(r.Context(), svc.Kube)
		if err != nil {
			writeError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, groups)
	})
	mux.HandleFunc("GET "+PathVersion, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version})
	})
	return mux
}

// resourceHandler serves a query of one resource (ResourceRequest).
func resourceHandler[T any](query func(context.Context, ResourceRequest) (T, error), log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := ResourceRequestFromQuery(r.URL.Query())
		if err != nil {
			writeError(w, log, err)
			return
		}
		resp, err := query(r.Context(), req)
		if err != nil {
			writeError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	code, status := errorCode(err)
	if status >= 500 {
		log.Warn("metrics API request failed", "err", err)
	}
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: err.Error()}})
}

// Query parameter names.
const (
	qKind, qNamespace, qName, qAll, qWindow = "kind", "namespace", "name", "all_namespaces", "window"
	qFrom, qFromNS, qTo, qToNS              = "from", "from_namespace", "to", "to_namespace"
)

// StatRequestFromQuery parses GET /api/v1/stat's parameters.
func StatRequestFromQuery(v url.Values) (StatRequest, error) {
	var r StatRequest
	k, err := ParseKind(v.Get(qKind))
	if err != nil {
		return r, err
	}
	r.Kind, r.Namespace, r.Name = k, v.Get(qNamespace), v.Get(qName)
	if r.AllNamespaces, err = parseBool(v.Get(qAll)); err != nil {
		return r, err
	}
	if r.Window, err = parseWindow(v.Get(qWindow)); err != nil {
		return r, err
	}
	if f := v.Get(qFrom); f != "" {
		fk, fn, err := ParseResource(f)
		if err != nil {
			return r, fmt.Errorf("from: %w", err)
		}
		r.FromKind, r.FromName, r.FromNamespace = string(fk), fn, v.Get(qFromNS)
	}
	if t := v.Get(qTo); t != "" {
		tk, tn, err := ParseResource(t)
		if err != nil {
			return r, fmt.Errorf("to: %w", err)
		}
		r.ToKind, r.ToName, r.ToNamespace = string(tk), tn, v.Get(qToNS)
	}
	return r, nil
}

// Query is the request's URL query.
func (r StatRequest) Query() url.Values {
	v := url.Values{qKind: {string(r.Kind)}}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set(qNamespace, r.Namespace)
	set(qName, r.Name)
	if r.AllNamespaces {
		v.Set(qAll, "true")
	}
	if r.Window > 0 {
		v.Set(qWindow, r.Window.String())
	}
	if r.FromName != "" {
		v.Set(qFrom, r.FromKind+"/"+r.FromName)
		set(qFromNS, r.FromNamespace)
	}
	if r.ToName != "" {
		v.Set(qTo, r.ToKind+"/"+r.ToName)
		set(qToNS, r.ToNamespace)
	}
	return v
}

// EdgeRequestFromQuery parses GET /api/v1/edges's parameters.
func EdgeRequestFromQuery(v url.Values) (EdgeRequest, error) {
	var r EdgeRequest
	k, err := ParseKind(v.Get(qKind))
	if err != nil {
		return r, err
	}
	r.Kind, r.Namespace = k, v.Get(qNamespace)
	if r.AllNamespaces, err = parseBool(v.Get(qAll)); err != nil {
		return r, err
	}
	r.Window, err = parseWindow(v.Get(qWindow))
	return r, err
}

// Query is the request's URL query.
func (r EdgeRequest) Query() url.Values {
	v := url.Values{qKind: {string(r.Kind)}}
	if r.Namespace != "" {
		v.Set(qNamespace, r.Namespace)
	}
	if r.AllNamespaces {
		v.Set(qAll, "true")
	}
	if r.Window > 0 {
		v.Set(qWindow, r.Window.String())
	}
	return v
}

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &BadRequestError{Msg: fmt.Sprintf("%s: %q is not a boolean", qAll, s)}
	}
	return b, nil
}

func parseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultWindow, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, &BadRequestError{Msg: fmt.Sprintf("window %q: want a duration between 1s and 24h, such as 30s or 1m", s)}
	}
	return d, nil
}

// Client calls a metrics API.
type Client struct {
	// Base is the API's root URL (http://127.0.0.1:8085).
	Base string
	HTTP *http.Client
}

// APIError is an error answer of the API.
type APIError struct {
	Status int
	ErrorDetail
}

func (e *APIError) Error() string { return e.Message }

// Stat calls GET /api/v1/stat.
func (c *Client) Stat(ctx context.Context, r StatRequest) (*StatResponse, error) {
	var out StatResponse
	return &out, c.get(ctx, PathStat, r.Query(), &out)
}

// Edges calls GET /api/v1/edges.
func (c *Client) Edges(ctx context.Context, r EdgeRequest) (*EdgesResponse, error) {
	var out EdgesResponse
	return &out, c.get(ctx, PathEdges, r.Query(), &out)
}

// Version calls GET /api/v1/version.
func (c *Client) Version(ctx context.Context) (string, error) {
	var out struct{ Version string }
	err := c.get(ctx, PathVersion, nil, &out)
	return out.Version, err
}

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.Base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("metrics API request: %w", err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the cause, without the query's URL
		}
		return fmt.Errorf("metrics API at %s is unreachable: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error.Message == "" {
			return &APIError{Status: resp.StatusCode, ErrorDetail: ErrorDetail{Code: "internal", Message: fmt.Sprintf("metrics API at %s answered %s", c.Base, resp.Status)}}
		}
		return &APIError{Status: resp.StatusCode, ErrorDetail: eb.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("metrics API answer from %s: %w", u, err)
	}
	return nil
}
