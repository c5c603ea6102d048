// Package notify turns the compute's event stream into notification
// feeds. One Hub follows the stream (a JetStream consumer on the compute's
// subjects), folds it into its own copy of the state, and hands every
// event, with the state of its project right after it, to the subscribed
// clients.
//
// Clients reconnecting with the sequence they last saw get what they
// missed, in order, before live events: from a ring of recent items, or,
// when they fell further behind, from a re-fold of the stream. A client
// whose queue fills up is cut off (its channel closes with ErrTooSlow)
// instead of letting the daemon's memory grow; it can reconnect with the
// last sequence it received.
//
// It imports events and replay, and nothing from actors: notifications
// report what is in the stream, whoever wrote it.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"labd/events"
	"labd/replay"
)

// Item is one event as subscribers see it.
type Item struct {
	events.Record
	// Project is the project the event belongs to, as it was right after
	// the event; nil for events outside projects.
	Project *replay.Project
	// Node is the node the event belongs to, as it was right after the
	// event; nil for events outside nodes.
	Node *replay.Node
}

// Errors a subscription ends with.
var (
	// ErrTooSlow: the subscriber's queue was full; it missed events.
	ErrTooSlow = errors.New("notify: subscriber too slow, disconnected")
	// ErrClosed: the hub stopped.
	ErrClosed = errors.New("notify: hub stopped")
	// ErrFuture: the subscriber claims a sequence the stream has not
	// reached.
	ErrFuture = errors.New("notify: sequence is ahead of the stream")
)

// Config configures a Hub.
type Config struct {
	Store     events.Store
	ComputeID string
	Logger    *slog.Logger
	// Ring is how many recent items are kept for reconnecting clients;
	// zero means 16384.
	Ring int
	// Buffer is the length of each subscriber's live queue; zero means
	// 1024.
	Buffer int
}

// Hub follows the event stream of one compute and fans it out.
type Hub struct {
	cfg    Config
	filter string

	mu sync.Mutex // guards the following
	// state is the hub's own fold: it renders events exactly as of their
	// place in the stream.
	state *replay.State
	// ring holds the last items, oldest first, as a circular buffer.
	ring       []Item
	ringHead   int // index of the oldest item
	ringLen    int
	evictedSeq uint64 // every item up to this sequence has left the ring
	subs       map[*Sub]struct{}
	closed     bool
}

// New returns a hub. Call Rehydrate, then Run.
func New(cfg Config) *Hub {
	if cfg.Ring <= 0 {
		cfg.Ring = 16384
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	return &Hub{
		cfg:    cfg,
		filter: events.ComputeFilter(cfg.ComputeID),
		state:  replay.New(),
		ring:   make([]Item, cfg.Ring),
		subs:   map[*Sub]struct{}{},
	}
}

// Rehydrate folds the compute's whole history, keeping the most recent
// items for reconnecting clients, and returns a copy of the folded state:
// startup reads the stream once, for the hub and the actors alike.
func (h *Hub) Rehydrate(ctx context.Context) (*replay.State, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := replay.Rehydrate(ctx, h.cfg.Store, h.cfg.ComputeID, func(st *replay.State, r events.Record) {
		h.pushLocked(itemOf(st, r))
	})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	h.state = st
	// Items up to the end of the history are in the ring or were evicted
	// from it; either way the ring covers everything after evictedSeq.
	return st.Clone(), nil
}

// Run follows the stream from where Rehydrate stopped until ctx ends, then
// closes every subscription. A failing store is retried with backoff.
func (h *Hub) Run(ctx context.Context) {
	defer h.close()
	backoff := 100 * time.Millisecond
	for {
		err := h.cfg.Store.Follow(ctx, h.filter, h.Position()+1, h.apply)
		if ctx.Err() != nil {
			return
		}
		h.cfg.Logger.Error("notification feed interrupted, retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// Position returns the sequence of the last event the hub has processed.
func (h *Hub) Position() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state.Seq
}

func (h *Hub) apply(r events.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Seq <= h.state.Seq {
		return nil // already seen before a Follow restart
	}
	if err := h.state.Apply(r); err != nil {
		// The actors refused to start on such a history, so this is a
		// writer outside this daemon. Report it, do not stall the feed.
		h.cfg.Logger.Error("notification feed cannot fold an event; skipping it", "seq", r.Seq, "err", err)
		h.state.Seq = r.Seq
		return nil
	}
	it := itemOf(h.state, r)
	h.pushLocked(it)
	for s := range h.subs {
		if s.match != nil && !s.match(it) {
			continue
		}
		select {
		case s.ch <- it:
		default:
			h.dropLocked(s, ErrTooSlow)
		}
	}
	return nil
}

// itemOf renders r with the state st has right after it.
func itemOf(st *replay.State, r events.Record) Item {
	it := Item{Record: r}
	if r.ProjectID != "" {
		it.Project = st.Projects[r.ProjectID]
	}
	if r.NodeID != "" {
		it.Node = st.Nodes[replay.NodeKey(r.ProjectID, r.NodeID)]
	}
	return it
}

func (h *Hub) pushLocked(it Item) {
	n := len(h.ring)
	if h.ringLen == n {
		h.evictedSeq = h.ring[h.ringHead].Seq
		h.ring[h.ringHead] = it
		h.ringHead = (h.ringHead + 1) % n
		return
	}
	h.ring[(h.ringHead+h.ringLen)%n] = it
	h.ringLen++
}

func (h *Hub) dropLocked(s *Sub, why error) {
	delete(h.subs, s)
	s.err = why
	close(s.ch)
}

func (h *Hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.dropLocked(s, ErrClosed)
	}
}

// Sub is a subscription. Deliver Backlog first, then everything from C
// until it is closed; Err then says why.
type Sub struct {
	// Backlog holds the items the subscriber missed, oldest first.
	Backlog []Item
	// C delivers live items. It is closed when the hub drops the
	// subscriber.
	C <-chan Item

	hub   *Hub
	ch    chan Item
	match func(Item) bool
	err   error // set before ch is closed
}

// Err returns why C was closed.
func (s *Sub) Err() error { return s.err }

// Close ends the subscription.
func (s *Sub) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		h.dropLocked(s, ErrClosed)
	}
}

// Subscribe starts a subscription to the items match accepts (nil: all).
// With since nil it delivers live items only, from the hub's position
// (which may trail the stream by the events it is still folding: a new
// subscriber can get an event stored a moment before it came, never miss
// one stored after). Otherwise it first delivers, as Backlog, every
// accepted item after sequence *since.
func (h *Hub) Subscribe(ctx context.Context, since *uint64, match func(Item) bool) (*Sub, error) {
	ch := make(chan Item, h.cfg.Buffer)
	s := &Sub{C: ch, hub: h, ch: ch, match: match}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	pos := h.state.Seq
	if since != nil && *since > pos {
		h.mu.Unlock()
		return nil, fmt.Errorf("%w: asked for events after %d, the stream is at %d", ErrFuture, *since, pos)
	}
	fromRing := since != nil && *since >= h.evictedSeq
	if fromRing {
		for i := range h.ringLen {
			it := h.ring[(h.ringHead+i)%len(h.ring)]
			if it.Seq > *since && (match == nil || match(it)) {
				s.Backlog = append(s.Backlog, it)
			}
		}
	}
	// Registered under the same lock the backlog was read under: no event
	// falls between the backlog and the live queue.
	h.subs[s] = struct{}{}
	h.mu.Unlock()

	if since != nil && !fromRing {
		backlog, err := h.refold(ctx, *since, pos, match)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Backlog = backlog
	}
	return s, nil
}

// refold reads the stream from its start to rebuild the items after since,
// up to and including pos, for a subscriber that fell behind the ring.
func (h *Hub) refold(ctx context.Context, since, pos uint64, match func(Item) bool) ([]Item, error) {
	st := replay.New()
	var out []Item
	errEnough := errors.New("past the subscription point")
	_, err := h.cfg.Store.Load(ctx, h.filter, 1, func(r events.Record) error {
		if r.Seq > pos {
			return errEnough
		}
		if err := st.Apply(r); err != nil {
			return err
		}
		if r.Seq <= since {
			return nil
		}
		it := itemOf(st, r)
		if match == nil || match(it) {
			out = append(out, it)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("notify: replay events after %d: %w", since, err)
	}
	return out, nil
}
