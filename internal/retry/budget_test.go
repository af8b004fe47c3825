package retry

import (
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		minPerSec float64
		requests  int
		want      int // retries allowed
	}{
		{"min only", 0, 1, 0, 10},
		{"ratio only", 0.2, 0, 100, 20},
		{"ratio plus min", 0.2, 10, 100, 120},
		{"nothing", 0, 0, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := time.Unix(1000, 0)
			b := NewBudget(tt.ratio, tt.minPerSec)
			b.now = func() time.Time { return clock }
			for range tt.requests {
				b.Deposit()
			}
			got := 0
			for range 1000 {
				if b.Withdraw() {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("retries allowed = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	clock := time.Unix(1000, 0)
	b := NewBudget(0.5, 0)
	b.now = func() time.Time { return clock }
	for range 10 {
		b.Deposit()
	}
	for range 5 {
		if !b.Withdraw() {
			t.Fatal("withdraw refused within budget")
		}
	}
	if b.Withdraw() {
		t.Fatal("withdraw allowed beyond 50% of requests")
	}
	clock = clock.Add(11 * time.Second) // old requests and retries leave the window
	if b.Withdraw() {
		t.Fatal("withdraw allowed with no recent requests")
	}
	b.Deposit()
	b.Deposit()
	if !b.Withdraw() {
		t.Fatal("withdraw refused after fresh requests")
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "PUT": true, "DELETE": true, "HEAD": true, "POST": false, "PATCH": false, "CONNECT": false} {
		if got := Idempotent(m); got != want {
			t.Errorf("Idempotent(%s) = %v, want %v", m, got, want)
		}
	}
}
