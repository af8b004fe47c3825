package outbound

import (
	"reflect"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/route"
)

func TestParseStatuses(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"503", []uint16{503}, false},
		{"502-504, 429", []uint16{429, 502, 503, 504}, false},
		{"5xx", func() []uint16 {
			var s []uint16
			for c := uint16(500); c <= 599; c++ {
				s = append(s, c)
			}
			return s
		}(), false},
		{"600", nil, true},
		{"504-502", nil, true},
		{"abc", nil, true},
	} {
		got, err := parseStatuses(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("parseStatuses(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		name       string
		a          map[string]string
		http, grpc bool
		want       route.Policy
		wantErrs   int
	}{
		{"none", nil, true, true, route.Policy{}, 0},
		{"timeouts", map[string]string{"timeout.linkerd.io/request": "2s", "timeout.linkerd.io/response": "500ms", "timeout.linkerd.io/idle": "1m"},
			true, true, route.Policy{Timeouts: route.Timeouts{Request: 2 * time.Second, Backend: 500 * time.Millisecond, Idle: time.Minute}}, 0},
		{"http retries with defaults", map[string]string{"retry.linkerd.io/http": "503"}, true, false,
			route.Policy{Retry: &route.Retry{HTTPStatuses: []uint16{503}, Limit: 1}}, 0},
		{"grpc retries", map[string]string{"retry.linkerd.io/grpc": "unavailable, deadline-exceeded", "retry.linkerd.io/limit": "3",
			"retry.linkerd.io/timeout": "250ms"}, false, true,
			route.Policy{Retry: &route.Retry{GRPCCodes: []uint32{14, 4}, Limit: 3, Timeout: 250 * time.Millisecond}}, 0},
		{"http annotation ignored on a GRPCRoute", map[string]string{"retry.linkerd.io/http": "503"}, false, true, route.Policy{}, 0},
		{"bad values", map[string]string{"timeout.linkerd.io/request": "soon", "retry.linkerd.io/grpc": "oops", "retry.linkerd.io/limit": "-1"},
			true, true, route.Policy{}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := parsePolicy(tt.a, tt.http, tt.grpc)
			if !reflect.DeepEqual(got, tt.want) || len(errs) != tt.wantErrs {
				t.Errorf("got %+v (retry %+v), errors %v; want %+v (retry %+v), %d errors", got, got.Retry, errs, tt.want, tt.want.Retry, tt.wantErrs)
			}
		})
	}
}

func TestParseAccrual(t *testing.T) {
	def := &route.FailureAccrual{MaxFailures: 7, MinPenalty: time.Second, MaxPenalty: time.Minute, JitterRatio: 0.5}
	for _, tt := range []struct {
		name     string
		a        map[string]string
		want     *route.FailureAccrual
		wantErrs int
	}{
		{"unset", nil, nil, 0},
		{"defaults", map[string]string{"balancer.linkerd.io/failure-accrual": "consecutive"}, def, 0},
		{"all set", map[string]string{"balancer.linkerd.io/failure-accrual": "consecutive",
			"balancer.linkerd.io/failure-accrual-consecutive-max-failures": "3",
			"balancer.linkerd.io/failure-accrual-consecutive-min-penalty":  "100ms",
			"balancer.linkerd.io/failure-accrual-consecutive-max-penalty":  "10s",
			"balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio": "0.1"},
			&route.FailureAccrual{MaxFailures: 3, MinPenalty: 100 * time.Millisecond, MaxPenalty: 10 * time.Second, JitterRatio: 0.1}, 0},
		{"unknown mode", map[string]string{"balancer.linkerd.io/failure-accrual": "success-rate"}, nil, 1},
		{"bad count keeps the default", map[string]string{"balancer.linkerd.io/failure-accrual": "consecutive",
			"balancer.linkerd.io/failure-accrual-consecutive-max-failures": "0"}, def, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := parseAccrual(tt.a)
			if !reflect.DeepEqual(got, tt.want) || len(errs) != tt.wantErrs {
				t.Errorf("got %+v, errors %v; want %+v, %d errors", got, errs, tt.want, tt.wantErrs)
			}
		})
	}
}
