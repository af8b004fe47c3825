package destination

import "sync"

// Subscriptions is the bookkeeping every Backend needs: who watches which
// target, and delivering fresh snapshots to them. Each delivery reads the
// snapshot under the subscription's own lock, so deliveries to one
// subscriber never overlap and the last one always reflects the newest
// source state.
type Subscriptions struct {
	snapshot func(target string) Snapshot

	mu   sync.Mutex
	subs map[*subscription]struct{}
}

type subscription struct {
	target string
	mu     sync.Mutex
	update func(Snapshot)
}

// NewSubscriptions delivers snapshots computed by snapshot.
func NewSubscriptions(snapshot func(target string) Snapshot) *Subscriptions {
	return &Subscriptions{snapshot: snapshot, subs: map[*subscription]struct{}{}}
}

// Add registers update for target, delivers the current snapshot at once,
// and returns the function that unregisters it.
func (s *Subscriptions) Add(target string, update func(Snapshot)) (cancel func()) {
	sub := &subscription{target: target, update: update}
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

// RefreshAll delivers a fresh snapshot to every subscriber.
func (s *Subscriptions) RefreshAll() { s.Refresh(nil) }

// Refresh delivers a fresh snapshot to the subscribers whose target match
// accepts (all of them when match is nil).
func (s *Subscriptions) Refresh(match func(target string) bool) {
	s.mu.Lock()
	all := make([]*subscription, 0, len(s.subs))
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

func (s *Subscriptions) deliver(sub *subscription) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.update(s.snapshot(sub.target))
}
