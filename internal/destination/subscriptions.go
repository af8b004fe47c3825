package destination

import "sync"

// Subscriptions is the bookkeeping every Backend needs: who watches which
// target, and delivering fresh values (endpoint snapshots, profiles) to
// them. Each delivery computes the value under the subscription's own lock,
// so deliveries to one subscriber never overlap and the last one always
// reflects the newest source state.
type Subscriptions[T any] struct {
	compute func(target string) T

	mu   sync.Mutex
	subs map[*subscription[T]]struct{}
}

type subscription[T any] struct {
	target string
	mu     sync.Mutex
	update func(T)
}

// NewSubscriptions delivers values computed by compute.
func NewSubscriptions[T any](compute func(target string) T) *Subscriptions[T] {
	return &Subscriptions[T]{compute: compute, subs: map[*subscription[T]]struct{}{}}
}

// Add registers update for target, delivers the current value at once,
// and returns the function that unregisters it.
func (s *Subscriptions[T]) Add(target string, update func(T)) (cancel func()) {
	sub := &subscription[T]{target: target, update: update}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	s.deliver(sub)
	return func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}
}

// RefreshAll delivers a fresh value to every subscriber.
func (s *Subscriptions[T]) RefreshAll() { s.Refresh(nil) }

// Refresh delivers a fresh value to the subscribers whose target match
// accepts (all of them when match is nil).
func (s *Subscriptions[T]) Refresh(match func(target string) bool) {
	s.mu.Lock()
	all := make([]*subscription[T], 0, len(s.subs))
	for sub := range s.subs {
		all = append(all, sub)
	}
	s.mu.Unlock()
	for _, sub := range all {
		if match == nil || match(sub.target) {
			s.deliver(sub)
		}
	}
}

func (s *Subscriptions[T]) deliver(sub *subscription[T]) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.update(s.compute(sub.target))
}
