package outbound

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/route"
)

// grpcCodes maps retry.linkerd.io/grpc names (kebab-case gRPC status
// names) to their codes.
var grpcCodes = map[string]uint32{
	"ok": 0, "cancelled": 1, "unknown": 2, "invalid-argument": 3, "deadline-exceeded": 4, "not-found": 5,
	"already-exists": 6, "permission-denied": 7, "resource-exhausted": 8, "failed-precondition": 9, "aborted": 10,
	"out-of-range": 11, "unimplemented": 12, "internal": 13, "unavailable": 14, "data-loss": 15, "unauthenticated": 16,
}

// parseDuration reads an annotation's duration ("300ms", "1s", "1m").
func parseDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: invalid duration %q", name, v)
	}
	return d, nil
}

// parsePolicy reads the timeout and retry annotations of a Service or a
// route. grpc tells which retry annotation applies (retry.linkerd.io/http
// is not valid on a GRPCRoute, retry.linkerd.io/grpc only there and on
// Services). Errors name the annotation; what parsed is still returned.
func parsePolicy(a map[string]string, allowHTTP, allowGRPC bool) (route.Policy, []error) {
	var p route.Policy
	var errs []error
	for name, dst := range map[string]*time.Duration{
		compat.AnnotationTimeoutRequest:  &p.Timeouts.Request,
		compat.AnnotationTimeoutResponse: &p.Timeouts.Backend,
		compat.AnnotationTimeoutIdle:     &p.Timeouts.Idle,
	} {
		if v, ok := a[name]; ok {
			d, err := parseDuration(name, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			*dst = d
		}
	}
	var r route.Retry
	retry := false
	if v, ok := a[compat.AnnotationRetryHTTP]; ok && allowHTTP {
		st, err := parseStatuses(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", compat.AnnotationRetryHTTP, err))
		} else {
			r.HTTPStatuses, retry = st, true
		}
	}
	if v, ok := a[compat.AnnotationRetryGRPC]; ok && allowGRPC {
		for _, n := range strings.Split(v, ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			if n == "" {
				continue
			}
			c, ok := grpcCodes[n]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown gRPC status %q", compat.AnnotationRetryGRPC, n))
				continue
			}
			r.GRPCCodes = append(r.GRPCCodes, c)
		}
		retry = retry || len(r.GRPCCodes) > 0
	}
	r.Limit = compat.DefaultRetryLimit
	if v, ok := a[compat.AnnotationRetryLimit]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s: invalid count %q", compat.AnnotationRetryLimit, v))
		} else {
			r.Limit, retry = n, true
		}
	}
	if v, ok := a[compat.AnnotationRetryTimeout]; ok {
		d, err := parseDuration(compat.AnnotationRetryTimeout, v)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.Timeout, retry = d, true
		}
	}
	if retry {
		p.Retry = &r
	}
	return p, errs
}

// parseStatuses reads "5xx,429,500-504" into a sorted list of statuses.
func parseStatuses(v string) ([]uint16, error) {
	set := map[uint16]bool{}
	for _, part := range strings.Split(v, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		lo, hi := 0, 0
		switch {
		case part == "":
			continue
		case len(part) == 3 && strings.HasSuffix(part, "xx") && part[0] >= '1' && part[0] <= '5':
			lo = int(part[0]-'0') * 100
			hi = lo + 99
		case strings.Contains(part, "-"):
			a, b, _ := strings.Cut(part, "-")
			var e1, e2 error
			lo, e1 = strconv.Atoi(strings.TrimSpace(a))
			hi, e2 = strconv.Atoi(strings.TrimSpace(b))
			if e1 != nil || e2 != nil {
				return nil, fmt.Errorf("invalid status range %q", part)
			}
		default:
			n, err := strconv.Atoi(part)
			if err != nil {
				return nil, fmt.Errorf("invalid status %q", part)
			}
			lo, hi = n, n
		}
		if lo < 100 || hi > 599 || lo > hi {
			return nil, fmt.Errorf("status range %q outside 100-599", part)
		}
		for s := lo; s <= hi; s++ {
			set[uint16(s)] = true
		}
	}
	out := make([]uint16, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// parseAccrual reads a Service's failure-accrual annotations: nil unless
// balancer.linkerd.io/failure-accrual is "consecutive".
func parseAccrual(a map[string]string) (*route.FailureAccrual, []error) {
	mode, ok := a[compat.AnnotationFailureAccrual]
	if !ok {
		return nil, nil
	}
	if strings.TrimSpace(mode) != compat.FailureAccrualConsecutive {
		return nil, []error{fmt.Errorf("%s: unsupported mode %q (want %q)", compat.AnnotationFailureAccrual, mode, compat.FailureAccrualConsecutive)}
	}
	minP, _ := time.ParseDuration(compat.DefaultFailureAccrualMinPenalty)
	maxP, _ := time.ParseDuration(compat.DefaultFailureAccrualMaxPenalty)
	f := &route.FailureAccrual{MaxFailures: compat.DefaultFailureAccrualMaxFailures, MinPenalty: minP, MaxPenalty: maxP,
		JitterRatio: compat.DefaultFailureAccrualJitter}
	var errs []error
	if v, ok := a[compat.AnnotationFailureAccrualMaxFailures]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s: invalid count %q", compat.AnnotationFailureAccrualMaxFailures, v))
		} else {
			f.MaxFailures = n
		}
	}
	for name, dst := range map[string]*time.Duration{
		compat.AnnotationFailureAccrualMinPenalty: &f.MinPenalty,
		compat.AnnotationFailureAccrualMaxPenalty: &f.MaxPenalty,
	} {
		if v, ok := a[name]; ok {
			d, err := parseDuration(name, v)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			*dst = d
		}
	}
	if f.MaxPenalty < f.MinPenalty {
		errs = append(errs, fmt.Errorf("%s %s is below %s %s; using the minimum for both",
			compat.AnnotationFailureAccrualMaxPenalty, f.MaxPenalty, compat.AnnotationFailureAccrualMinPenalty, f.MinPenalty))
		f.MaxPenalty = f.MinPenalty
	}
	if v, ok := a[compat.AnnotationFailureAccrualJitter]; ok {
		j, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || j < 0 || j > 100 {
			errs = append(errs, fmt.Errorf("%s: invalid ratio %q (0 to 100)", compat.AnnotationFailureAccrualJitter, v))
		} else {
			f.JitterRatio = j
		}
	}
	return f, errs
}
